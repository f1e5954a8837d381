//! The documented schema is covered: every key of the config file's schema is documented in
//! docs/configuration.md, and every configuration key and metric the docs document is named
//! by a test (tests/*.rs, or the config parser's unit tests). A key added to the schema
//! without its documentation, or to the docs without a test, fails here; tests/README.md maps
//! the documented behaviours to the tests that hold them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first backquoted word of each table row: `| `name` | ...`.
fn table_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(name, _)| name.to_string())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
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
    let reference = read(&root.join("docs/configuration.md"));
    let mut keys = table_names(&reference);
    keys.extend(yaml_keys(&reference));
    let metrics: BTreeSet<String> = table_names(&read(&root.join("docs/metrics.md")))
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
        "documented in docs/ but named by no test: {untested:?}"
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

/// The keys of the config file's schema: the fields of the `File*` structs that serde reads
/// (src/config/file.rs), under their serde names.
fn schema_keys(file_rs: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut in_struct = false;
    let mut rename = None;
    for line in file_rs.lines() {
        let line = line.trim();
        if let Some(rest) = line.split_once("rename = \"").map(|(_, r)| r) {
            rename = rest.split('"').next().map(str::to_string);
            continue;
        }
        // Items and fields, whatever their visibility: `pub`, `pub(crate)`, `pub(super)`.
        let Some(item) = line.strip_prefix("pub ").or_else(|| {
            line.strip_prefix("pub(")
                .and_then(|l| l.split_once(") ").map(|(_, r)| r))
        }) else {
            if line == "}" {
                in_struct = false;
            }
            continue;
        };
        if item.starts_with("struct File") && item.ends_with('{') {
            in_struct = true;
        } else if let Some((field, _)) = item.split_once(':').filter(|_| in_struct) {
            keys.insert(rename.take().unwrap_or_else(|| field.to_string()));
        }
    }
    keys
}

#[test]
fn every_key_of_the_schema_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = schema_keys(&read(&root.join("src/config/file.rs")));
    // The parse itself must have found the schema, or this test proves nothing.
    assert!(
        schema.len() >= 60,
        "found only {} keys: {schema:?}",
        schema.len()
    );
    assert!(
        schema.contains("type") && !schema.contains("kind"),
        "serde renames are read"
    );
    let reference = read(&root.join("docs/configuration.md"));
    let mut documented = table_names(&reference);
    documented.extend(yaml_keys(&reference));
    let missing: Vec<&String> = schema.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "keys of src/config/file.rs missing from docs/configuration.md: {missing:?}"
    );
}
