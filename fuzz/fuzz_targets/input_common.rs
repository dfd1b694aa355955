//! Any bytes as an input file named `*.EXT`: opening and reading every batch returns Ok or Err, never
//! panics. (The format comes from the content first, so every target reaches every reader.)
use softlabel::data::DataSpec;

pub fn fuzz_input(data: &[u8], ext: &str) {
    // Decoder panics that softlabel catches (and reports as errors) must not count as crashes.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(softlabel::util::quiet_guarded_panics);
    let path = std::env::temp_dir().join(format!("softlabel-fuzz-input-{}.{ext}", std::process::id()));
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
}
