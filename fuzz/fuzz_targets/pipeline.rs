//! Any bytes as a pipeline file: Ok or Err, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // Decoder panics that softlabel catches (and reports as errors) must not count as crashes.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(softlabel::util::quiet_guarded_panics);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = softlabel::config::Pipeline::parse(text, Path::new("pipelines/fuzz.toml"), &Default::default());
    }
});
