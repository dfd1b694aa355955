//! Any bytes as a .npy input: opening and reading every batch returns Ok or Err, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use softlabel::data::DataSpec;

fuzz_target!(|data: &[u8]| {
    // Decoder panics that softlabel catches (and reports as errors) must not count as crashes.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(softlabel::util::quiet_guarded_panics);
    let path = std::env::temp_dir().join(format!("softlabel-fuzz-input-{}.npy", std::process::id()));
    std::fs::write(&path, data).unwrap();
    for skip_nonfinite in [false, true] {
        let spec = DataSpec { skip_nonfinite, ..DataSpec::new("input") };
        if let Ok(src) = softlabel::data::open(&path, &spec) {
            for b in src.batches(7) {
                if b.is_err() {
                    break;
                }
            }
        }
    }
});
