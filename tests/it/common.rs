//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The fixtures folder (tests/fixtures/make_models.py writes it; `make test` sets SOFTLABEL_FIXTURES).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("SOFTLABEL_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures"));
    assert!(
        dir.join("linear.json").is_file(),
        "test fixtures missing in {}: run `make test` (it runs tests/fixtures/make_models.py first)",
        dir.display()
    );
    dir
}

/// A fixture's path.
pub fn fx(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// Copies a folder's files (one level).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Rewrites a dataset's manifest consistently (checksum recomputed), as a tool that knows the format
/// would: the hostile author's way past the checksum.
pub fn reseal(ds: &Path, change: impl FnOnce(&mut softlabel::store::Manifest)) {
    let p = ds.join("_manifest.json");
    let mut m: softlabel::store::Manifest = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    change(&mut m);
    m.seal();
    std::fs::write(&p, m.to_json().unwrap()).unwrap();
}

/// Starts `softlabel ARGS` and kills it with SIGKILL as soon as `ready()` holds (polled every 5 ms,
/// failing the test after `what` has not happened in 120 s).
pub fn kill_when(args: &[String], what: &str, ready: impl Fn() -> bool) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "no {what} after 120 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
