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
