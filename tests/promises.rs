//! The documented schema is covered: every configuration key and every metric that README.md
//! documents is named by a test (tests/*.rs, or the config parser's unit tests). A key or
//! metric added to the docs without a test fails here; tests/README.md maps the documented
//! behaviours to the tests that hold them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md between two of its headings.
fn section<'a>(readme: &'a str, from: &str, to: &str) -> &'a str {
    let start = readme
        .find(from)
        .unwrap_or_else(|| panic!("README.md has no {from:?}"));
    let end = readme[start..]
        .find(to)
        .unwrap_or_else(|| panic!("README.md has no {to:?} after {from:?}"));
    &readme[start..start + end]
}

/// The first backquoted word of each table row: `| `name` | ...`.
fn table_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// The keys of the YAML examples (`  key: value  # ...`) inside the reference.
fn yaml_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_yaml = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_yaml = line == "```yaml";
            continue;
        }
        if in_yaml {
            let key = line.trim_start().trim_start_matches("- ");
            if let Some((key, _)) = key.split_once(':') {
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    keys.insert(key.to_string());
                }
            }
        }
    }
    keys
}

/// Every test source: the integration tests, their harness and the config unit tests.
fn test_sources(root: &Path) -> String {
    let mut text = read(&root.join("src/config/tests.rs"));
    for dir in ["tests", "tests/common"] {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&read(&path));
            }
        }
    }
    text
}

/// Whether `word` occurs in `text` with no identifier character on either side.
fn names(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

#[test]
fn every_documented_config_key_and_metric_is_named_by_a_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = read(&root.join("README.md"));
    let reference = section(
        &readme,
        "## Configuration reference",
        "## What the proxy does",
    );
    let mut keys = table_names(reference);
    keys.extend(yaml_keys(reference));
    let metrics: BTreeSet<String> = table_names(&readme)
        .into_iter()
        .filter(|name| name.starts_with("edgeproxy_"))
        .collect();
    // The parse itself must have found the reference, or this test proves nothing.
    assert!(keys.len() >= 60, "found only {} keys: {keys:?}", keys.len());
    assert!(metrics.len() >= 10, "found only {metrics:?}");

    let tests = test_sources(root);
    let untested: Vec<&String> = keys
        .iter()
        .chain(&metrics)
        .filter(|name| !names(&tests, name))
        .collect();
    assert!(
        untested.is_empty(),
        "documented in README.md but named by no test: {untested:?}"
    );
}

#[test]
fn the_name_check_sees_word_boundaries() {
    assert!(names("timeout: 1s", "timeout"));
    assert!(!names("read_timeout: 1s", "timeout"));
    assert!(!names(
        "edgeproxy_requests_total_x",
        "edgeproxy_requests_total"
    ));
    assert_eq!(
        table_names("| `listen` | x |\n| `edgeproxy_up` | gauge |\n| key | d |"),
        ["edgeproxy_up", "listen"].map(String::from).into()
    );
}

/// Every test tests/README.md names (`file.rs::test`, a path under src/ or a file of tests/)
/// is a function of that file, so that a test renamed or moved cannot leave a promise held
/// by nothing.
#[test]
fn every_test_the_promise_map_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = read(&root.join("tests/README.md"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for cell in map.split('`').skip(1).step_by(2) {
        let Some((file, test)) = cell.split_once(".rs::") else {
            continue;
        };
        if test.is_empty() || !test.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let file = format!("{file}.rs");
        let path = if file.starts_with("src/") {
            root.join(&file)
        } else {
            root.join("tests").join(&file)
        };
        let found = fs::read_to_string(&path).is_ok_and(|text| names(&text, &format!("fn {test}")));
        checked += 1;
        if !found {
            missing.push(format!("{file}::{test}"));
        }
    }
    assert!(
        checked > 100,
        "only {checked} tests named in tests/README.md"
    );
    assert!(
        missing.is_empty(),
        "tests/README.md names tests that do not exist: {missing:?}"
    );
}
