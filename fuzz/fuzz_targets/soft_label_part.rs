//! Any bytes as a soft-label part: the reader (footer and id checks, schema checks, decoding, the full
//! scan `verify` does, block reads) returns Ok or Err, never panics. The manifest is a fixed valid one
//! (fuzz/manifest.json, from the test fixtures), so the fuzzer reaches the part reader past the hash
//! checks that `SoftLabels::open` does first.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static (PathBuf, softlabel::store::Manifest) {
    static DIR: OnceLock<(PathBuf, softlabel::store::Manifest)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("softlabel-fuzz-part-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = include_str!("../manifest.json");
        let m = softlabel::store::Manifest::parse(text, &dir).expect("fuzz/manifest.json is valid");
        (dir, m)
    })
}

fuzz_target!(|data: &[u8]| {
    // Decoder panics that softlabel catches (and reports as errors) must not count as crashes.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(softlabel::util::quiet_guarded_panics);
    let (dir, manifest) = dir();
    std::fs::write(dir.join(&manifest.parts[0].file), data).unwrap();
    let labels = softlabel::store::SoftLabels::from_parts(dir, manifest.clone());
    let _ = labels.check_contents();
    let _ = labels.load();
    let _ = labels.ids();
    let _ = labels.scan(true, |_, _, _, _| Ok(()));
    if let Ok(blocks) = labels.blocks(5) {
        let _ = labels.load_blocks(&blocks);
    }
});
