//! Inputs the fuzzers found (tests/fuzz_regressions/), each refused cleanly by every reader.

use std::path::{Path, PathBuf};
use std::process::Command;

fn inputs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no regression inputs in {}", dir.display());
    v
}

#[test]
fn fuzz_found_parquet_inputs_are_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/teachers/mnist_cnn.onnx");
    for input in inputs() {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("-part.parquet") {
            // Found as a soft-label part: only the part reader sees it (below).
            part_reader_refuses(&input, tmp.path());
            continue;
        }
        // As input data.
        let o = Command::new(env!("CARGO_BIN_EXE_softlabel"))
            .args(["precompute", "--quiet", "--temperature", "2", "--teacher"])
            .arg(&teacher)
            .arg("--data")
            .arg(&input)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", input.display());
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
        assert!(err.contains("not a readable Parquet file") || err.contains("corrupt footer"), "{err}");
        assert!(err.contains(input.to_str().unwrap()), "{err}");
        // As a soft-label part (past the hash checks, straight into the part reader).
        part_reader_refuses(&input, tmp.path());
    }
}

/// `input` as the part of a valid manifest (fuzz/manifest.json), past the hash checks: every reader
/// path refuses it with an error, none panics.
fn part_reader_refuses(input: &Path, tmp: &Path) {
    let dir = tmp.join("part");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest: softlabel::store::Manifest = serde_json::from_str(include_str!("../../fuzz/manifest.json")).unwrap();
    std::fs::copy(input, dir.join(&manifest.parts[0].file)).unwrap();
    let labels = softlabel::store::SoftLabels::from_parts(&dir, manifest);
    let results = [
        labels.check_contents().err(),
        labels.load().err(),
        labels.scan(true, |_, _, _, _| Ok(())).err(),
        labels.ids().err(),
    ];
    for (what, r) in ["check_contents", "load", "scan", "ids"].iter().zip(&results) {
        assert!(r.is_some(), "{}: {what} accepted it", input.display());
    }
}

/// The crafted page header that made the parquet crate skip at the end of the file for minutes
/// (tests/fuzz_regressions/README.md) is refused in well under a second now, read the way the fuzzer
/// read it: batches of 7 rows. Run on a thread so a regression fails the test instead of hanging it.
#[test]
fn the_endless_page_header_skip_is_stopped() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/hang-page-header-skip.bin");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let spec = softlabel::data::DataSpec::new("input");
        let result = softlabel::data::open(&input, &spec).and_then(|src| src.batches(7).collect::<Result<Vec<_>, _>>());
        let _ = tx.send(result.err().map(|e| e.to_string()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(Some(err)) => assert!(err.contains("keeps reading past the end of the file"), "{err}"),
        Ok(None) => panic!("the crafted file was read without an error"),
        Err(_) => panic!("still reading the crafted file after 30 s"),
    }
}

/// Manifests the `manifest` fuzzer found: each is refused, or round-trips through the writer unchanged
/// (what the fuzz target asserts). The first (2026-12-02) had unknown fields inside `source`, which the
/// reader dropped, so the rewritten manifest no longer matched its checksum: nested manifest types now
/// reject unknown fields like the manifest itself.
#[test]
fn fuzz_found_manifests_are_refused_or_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("manifest-") && name.ends_with(".json")) {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&p).unwrap();
        match softlabel::store::Manifest::parse(&text, &p) {
            Err(e) => assert!(e.to_string().contains(&name), "{e}"),
            Ok(m) => {
                let again = String::from_utf8(m.to_json().unwrap()).unwrap();
                let back = softlabel::store::Manifest::parse(&again, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(back, m, "{name}");
            }
        }
    }
    assert!(n >= 1, "no manifest regressions in {}", dir.display());
}
