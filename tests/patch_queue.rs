//! The Pingora patch queue (`patches/pingora/`, `scripts/patch-pingora.sh`): the build uses the
//! locked crates.io sources with every patch applied, and a patch that no longer applies stops
//! the script with its name.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn patches() -> Vec<std::path::PathBuf> {
    let mut patches: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("patches/pingora"))
        .expect("patches/pingora")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    patches.sort();
    patches
}

/// The non-blank lines a patch adds (`+`) or removes (`-`), with the file of each.
fn changed_lines(patch: &str, sign: char) -> Vec<(String, String)> {
    let mut file = String::new();
    let mut lines = Vec::new();
    for line in patch.lines() {
        if let Some(path) = line.strip_prefix("+++ b/") {
            file = path.to_string();
        } else if line.starts_with("+++") || line.starts_with("---") {
            continue;
        } else if let Some(changed) = line.strip_prefix(sign) {
            if !changed.trim().is_empty() {
                lines.push((file.clone(), changed.to_string()));
            }
        }
    }
    lines
}

#[test]
fn every_patch_has_a_header_that_says_why_and_what_it_measured() {
    let patches = patches();
    assert!(!patches.is_empty(), "no patch in patches/pingora");
    for patch in patches {
        let text = std::fs::read_to_string(&patch).expect("read the patch");
        let (header, _) = text
            .split_once("\n---\n")
            .expect("a git format-patch header");
        for part in ["Subject: ", "Why:", "Test:", "Measured", "Upstream:"] {
            assert!(
                header.contains(part),
                "{} has no {part:?} in its header",
                patch.display()
            );
        }
    }
}

#[test]
fn the_build_uses_the_sources_with_every_patch_applied() {
    let texts: Vec<_> = patches()
        .into_iter()
        .map(|p| (std::fs::read_to_string(&p).expect("read the patch"), p))
        .collect();
    for (i, (text, patch)) in texts.iter().enumerate() {
        // A line that a later patch takes out again is not expected in the tree.
        let removed_later: Vec<_> = texts[i + 1..]
            .iter()
            .flat_map(|(later, _)| changed_lines(later, '-'))
            .collect();
        for (file, line) in changed_lines(text, '+') {
            if removed_later.contains(&(file.clone(), line.clone())) {
                continue;
            }
            let path = Path::new(ROOT).join("patched").join(&file);
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/patch-pingora.sh)", path.display())
            });
            assert!(
                source.lines().any(|l| l == line),
                "{} is not applied: {file} lacks {line:?}",
                patch.display()
            );
        }
    }
}

#[test]
fn a_patch_that_no_longer_applies_stops_the_script_with_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::create_dir_all(root.join("patches/pingora")).unwrap();
    for file in ["Cargo.toml", "Cargo.lock", "scripts/patch-pingora.sh"] {
        std::fs::copy(Path::new(ROOT).join(file), root.join(file)).expect("copy");
    }
    // Context that no version of pingora-core has.
    std::fs::write(
        root.join("patches/pingora/0001-stale.patch"),
        "Subject: [PATCH] stale\n---\n--- a/pingora-core/src/lib.rs\n+++ b/pingora-core/src/lib.rs\n\
         @@ -1,3 +1,3 @@\n no such line one\n-no such line two\n+a replacement\n no such line three\n",
    )
    .unwrap();
    let out = Command::new("bash")
        .arg(root.join("scripts/patch-pingora.sh"))
        .output()
        .expect("run patch-pingora.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("patches/pingora/0001-stale.patch does not apply to pingora-core 0.9.1"),
        "{stderr}"
    );
    assert!(
        !root.join("patched").exists(),
        "a half-patched tree was left behind"
    );
}
