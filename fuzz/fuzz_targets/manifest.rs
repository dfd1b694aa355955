//! Any bytes as `_manifest.json`: parsing and checking must return Ok or Err, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Decoder panics that softlabel catches (and reports as errors) must not count as crashes.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(softlabel::util::quiet_guarded_panics);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = softlabel::store::Manifest::parse(text, Path::new("_manifest.json")) {
            // A manifest that parses round-trips through its own writer.
            let again = m.to_json().expect("serialise");
            let back = softlabel::store::Manifest::parse(std::str::from_utf8(&again).unwrap(), Path::new("x"))
                .expect("re-parse");
            assert_eq!(back, m);
        }
    }
});
