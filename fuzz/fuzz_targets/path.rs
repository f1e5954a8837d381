//! Whatever path a client sends, normalisation never panics, and what it returns is in
//! normal form: unchanged by a second pass, rooted, with no empty or dot segment and no
//! escaped unreserved character that could hide one.

#![no_main]

use edgeproxy::fuzzing::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let Ok(normal) = normalize(path) else {
        return;
    };
    assert!(normal.starts_with('/'));
    assert_eq!(normalize(&normal).as_deref(), Ok(normal.as_ref()));
    assert!(!normal.contains("//"), "{normal}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{normal}");
    }
    let lower = normal.to_ascii_lowercase();
    assert!(!lower.contains("%2e"), "{normal}");
});
