//! End-to-end tests of the `softlabel` binary against real ONNX Runtime and real Parquet files.
//!
//! Fixtures (small ONNX models built with the `onnx` package, Parquet files written by pyarrow) come
//! from tests/fixtures/make_models.py; `make test` generates them and sets SOFTLABEL_FIXTURES.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use softlabel::store::SoftLabels;

use crate::common::{copy_dir, fx, kill_when};

pub(crate) fn softlabel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args).arg("--quiet").output().expect("run softlabel")
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The fixture teacher's parameters (linear.json) and the expected logits x @ W + b (f64 reference).
struct Linear {
    w: Vec<Vec<f64>>,
    b: Vec<f64>,
}

impl Linear {
    fn load() -> Self {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx("linear.json")).unwrap()).unwrap();
        let w = v["W"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect();
        let b = v["B"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        Linear { w, b }
    }
    fn logits(&self, x: &[f32]) -> Vec<f64> {
        (0..self.b.len())
            .map(|k| self.b[k] + x.iter().enumerate().map(|(d, &v)| f64::from(v) * self.w[d][k]).sum::<f64>())
            .collect()
    }
}

fn precompute(teacher: &str, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["precompute", "--teacher", teacher, "--data", s(data), "--temperature", "2", "--out", s(out)];
    args.extend_from_slice(extra);
    softlabel(&args)
}

/// Asserts the command failed with exit code 1 and a message containing `expect`.
pub(crate) fn assert_fails(o: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(expect), "stderr lacks {expect:?}: {err}");
}

pub(crate) fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Checks every stored logit against the f64 reference within 1e-5, and soft = softmax(logits / 2).
fn check_against_reference(out: &Path, expect_rows: usize) {
    let lin = Linear::load();
    let ds = SoftLabels::open(out).unwrap();
    let data = ds.load().unwrap();
    assert_eq!(data.ids.len(), expect_rows);
    for (i, row) in data.inputs.rows().into_iter().enumerate() {
        let expected = lin.logits(row.as_slice().unwrap());
        for (k, e) in expected.iter().enumerate() {
            let got = f64::from(data.dense_logits().unwrap()[[i, k]]);
            assert!((got - e).abs() < 1e-5 * (1.0 + e.abs()), "row {i} class {k}: {got} vs reference {e}");
        }
    }
    assert_eq!(ds.manifest().temperature, 2.0);
    assert_eq!(ds.manifest().num_classes, 3);
}

#[test]
fn precompute_writes_exact_logits_and_a_complete_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    let o =
        precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &["--batch-size", "37", "--rows-per-part", "64"]);
    assert_ok(&o);
    check_against_reference(&out, 200);
    let ds = SoftLabels::open(&out).unwrap();
    let m = ds.manifest();
    // 200 rows at 64 per part: parts of 64, 64, 64, 8, named in order, ids preserved.
    assert_eq!(m.parts.iter().map(|p| p.rows).collect::<Vec<_>>(), vec![64, 64, 64, 8]);
    assert_eq!(m.parts[0].file, "part-00000.parquet");
    let data = ds.load().unwrap();
    assert_eq!(data.ids, (1000..1200).collect::<Vec<u64>>());
    assert_eq!(m.labeled_rows, 200);
    // No temporary files left behind.
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn precompute_accepts_every_input_layout() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder of two files, a list<double> column, four scalar columns, and a teacher wanting [batch,1,2,2].
    let cases: Vec<(&str, PathBuf, Vec<&str>)> = vec![
        ("linear.onnx", fx("small_dir"), vec![]),
        ("linear.onnx", fx("list_f64.parquet"), vec!["--input-column", "features"]),
        ("linear.onnx", fx("scalars.parquet"), vec!["--input-column", "f0,f1,f2,f3"]),
        ("linear_image.onnx", fx("small.parquet"), vec![]),
        ("linear_fixed_batch.onnx", fx("small.parquet"), vec!["--batch-size", "7"]),
    ];
    for (i, (model, data, extra)) in cases.iter().enumerate() {
        let out = tmp.path().join(format!("case{i}"));
        let o = precompute(s(&fx(model)), data, &out, extra);
        assert_ok(&o);
        check_against_reference(&out, 200);
    }
}

#[test]
fn integer_inputs_reach_an_int64_teacher_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ints");
    assert_ok(&precompute(s(&fx("linear_int64.onnx")), &fx("ints.parquet"), &out, &[]));
    // The stored input keeps its int64 type; logits are W applied to those integers.
    let m = SoftLabels::open(&out).unwrap();
    assert_eq!(m.manifest().input.dtype, softlabel::data::ElementType::I64);
    check_against_reference(&out, 200);
}

#[test]
fn existing_output_is_refused_then_replaced_with_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &[]));
    let again = precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &["--overwrite"]));
    check_against_reference(&out, 200);
}

#[test]
fn tampered_datasets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &["--rows-per-part", "100"]));
    let other = tmp.path().join("other");
    assert_ok(&precompute(s(&fx("linear_image.onnx")), &fx("small.parquet"), &other, &["--rows-per-part", "100"]));

    let inspect = |dir: &Path| softlabel(&["inspect", s(dir)]);
    assert_ok(&inspect(&out));
    // A part replaced by another run's part (same rows, other teacher file in the metadata).
    let swapped = tmp.path().join("swapped");
    copy_dir(&out, &swapped);
    std::fs::copy(other.join("part-00001.parquet"), swapped.join("part-00001.parquet")).unwrap();
    let o = inspect(&swapped);
    assert_fails(&o, "part-00001.parquet: part was changed or replaced");
    // A missing part.
    let missing = tmp.path().join("missing");
    copy_dir(&out, &missing);
    std::fs::remove_file(missing.join("part-00000.parquet")).unwrap();
    let o = inspect(&missing);
    assert_fails(&o, "part-00000.parquet: part listed in _manifest.json is missing");
    // A manifest edited by hand to a newer major version.
    let newer = tmp.path().join("newer");
    copy_dir(&out, &newer);
    let text = std::fs::read_to_string(newer.join("_manifest.json"))
        .unwrap()
        .replace("\"schema_version\": \"2.0\"", "\"schema_version\": \"3.0\"");
    std::fs::write(newer.join("_manifest.json"), text).unwrap();
    let o = inspect(&newer);
    assert_fails(&o, "schema version 3.0 is newer");
    // No manifest at all (an interrupted run).
    let partial = tmp.path().join("partial");
    copy_dir(&out, &partial);
    std::fs::remove_file(partial.join("_manifest.json")).unwrap();
    let o = inspect(&partial);
    assert_fails(&o, "_manifest.json: missing");
}

#[test]
fn train_and_eval_learn_the_teacher_and_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &labels, &[]));
    let train = |out: &Path| {
        softlabel(&[
            "train",
            "--labels",
            s(&labels),
            "--out",
            s(out),
            "--hidden",
            "16",
            "--epochs",
            "30",
            "--batch-size",
            "32",
            "--lr",
            "0.01",
            "--alpha",
            "0.7",
            "--seed",
            "3",
            "--val-fraction",
            "0.25",
            "--threads",
            "2",
            "--json",
        ])
    };
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let oa = train(&a);
    assert_ok(&oa);
    assert_ok(&train(&b));
    let wa = std::fs::read(a.join("student.safetensors")).unwrap();
    let wb = std::fs::read(b.join("student.safetensors")).unwrap();
    assert_eq!(wa, wb, "same seed and threads must give identical weights");
    let info: serde_json::Value = serde_json::from_slice(&oa.stdout).unwrap();
    assert_eq!(info["dims"], serde_json::json!([4, 16, 3]));
    assert_eq!(info["temperature"], serde_json::json!(2.0));
    // The log has one line per epoch.
    assert_eq!(std::fs::read_to_string(a.join("train_log.jsonl")).unwrap().lines().count(), 30);

    let e =
        softlabel(&["eval", "--student", s(&a), "--data", s(&fx("small.parquet")), "--labels", s(&labels), "--json"]);
    assert_ok(&e);
    let r: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(r["rows"], 200);
    let acc = r["accuracy"].as_f64().unwrap();
    let errors = r["errors"].as_u64().unwrap();
    assert!((acc - (200 - errors) as f64 / 200.0).abs() < 1e-12);
    // The labels are the teacher's argmax, so a student that learned the teacher scores high on both.
    assert!(acc > 0.9, "student accuracy {acc}");
    assert!(r["teacher_agreement"].as_f64().unwrap() > 0.9);
    assert_eq!(r["teacher_accuracy"], 1.0);
    assert!(r["kl_to_teacher"].as_f64().unwrap() >= 0.0);
    for key in ["ece", "nll", "teacher_ece", "teacher_rows"] {
        assert!(!r[key].is_null(), "{key} missing in {r}");
    }
}

#[test]
fn train_and_eval_reject_bad_settings_before_work() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &labels, &[]));
    let out = tmp.path().join("st");
    for (args, expect) in [
        (vec!["--alpha", "1.5"], "--alpha must be in [0, 1]"),
        (vec!["--alpha=-0.1"], "--alpha must be in [0, 1]"),
        (vec!["--temperature", "0"], "temperature must be finite and > 0"),
        (vec!["--lr", "inf"], "--lr must be finite and > 0"),
        (vec!["--val", s(&fx("wide.parquet"))], "wide.parquet: column 'input' has 5 values per row"),
    ] {
        let mut full = vec!["train", "--labels", s(&labels), "--out", s(&out)];
        full.extend(args.iter());
        let o = softlabel(&full);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!out.join("student.json").exists());
    }
    let o = softlabel(&["train", "--labels", "/nonexistent/labels", "--out", s(&out)]);
    assert_fails(&o, "/nonexistent/labels");
}

#[test]
fn pipeline_runs_end_to_end_and_rejects_unknown_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |n: &str| fx(n).to_str().unwrap().to_string();
    let good = format!(
        "[data]\ntrain = \"{}\"\ntest = \"{}\"\n\n[teacher]\nmodel = \"{}\"\ntemperature = 2.0\n\n[student]\nhidden = [16]\nepochs = 5\nbatch_size = 32\nlr = 0.01\n\n[output]\ndir = \"{}\"\n",
        f("small.parquet"),
        f("small_dir"),
        f("linear.onnx"),
        tmp.path().join("run").display()
    );
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, &good).unwrap();
    let o = softlabel(&["run", "--root", "/", s(&path), "--json"]);
    assert_ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["test"]["rows"], 200);
    assert_eq!(r["train_labels_reused"], false);
    // The second run reuses the teacher pass.
    let o = softlabel(&["run", "--root", "/", s(&path), "--json"]);
    assert_ok(&o);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["train_labels_reused"], true);

    let bad = good.replace("temperature = 2.0", "temperature = 2.0\ntemprature = 3.0");
    std::fs::write(&path, bad).unwrap();
    let o = softlabel(&["run", "--root", "/", s(&path)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("p.toml") && err.contains("unknown field `temprature`"), "{err}");
}

#[test]
fn help_explains_every_subcommand() {
    let o = softlabel(&["--help"]);
    assert_ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    for sub in ["precompute", "train", "eval", "inspect", "run"] {
        assert!(out.contains(sub), "{out}");
    }
    let o = softlabel(&["precompute", "--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Softmax temperature"));
}

/// Soft labels for MNIST's 10k test rows from the shipped CNN teacher at T = 4.
pub(crate) fn mnist_test_labels(out: &Path) {
    let (teacher, data) = (mnist("teachers/mnist_cnn.onnx"), mnist("mnist/test.parquet"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&data), "--input-column", "image", "-T", "4"];
    assert_ok(&softlabel(&[&args[..], &["--out", s(out)]].concat()));
}

pub(crate) fn mnist(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

/// Content of a dataset sorted by id: (id, label, input, logits bits, soft bits).
pub(crate) type Rows = Vec<(u64, Option<i64>, Vec<u32>, Vec<u32>)>;

pub(crate) fn rows_by_id(dir: &Path) -> Rows {
    let d = SoftLabels::open(dir).unwrap().load().unwrap();
    let mut rows: Rows = (0..d.ids.len())
        .map(|i| {
            (
                d.ids[i],
                d.labels[i],
                d.inputs.row(i).iter().map(|v| v.to_bits()).collect(),
                d.dense_logits().unwrap().row(i).iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

#[test]
fn three_shards_in_separate_processes_merge_to_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = mnist("teachers/mnist_cnn.onnx");
    let data = mnist("mnist/test.parquet");
    let args = |out: &Path| -> Vec<String> {
        [
            "precompute",
            "--teacher",
            s(&teacher),
            "--data",
            s(&data),
            "--input-column",
            "image",
            "--temperature",
            "4",
            "--out",
            s(out),
            "--quiet",
            "--threads",
            "1",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let whole = tmp.path().join("whole");
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&whole)).output().unwrap());
    let children: Vec<_> = (0..3)
        .map(|i| {
            let out = tmp.path().join(format!("shard{i}"));
            let child = Command::new(env!("CARGO_BIN_EXE_softlabel"))
                .args(args(&out))
                .args(["--shard", &format!("{i}/3")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    let mut shard_dirs = Vec::new();
    for (out, child) in children {
        assert_ok(&child.wait_with_output().unwrap());
        shard_dirs.push(out);
    }
    // Each shard holds roughly a third, and no row twice.
    let sizes: Vec<u64> = shard_dirs.iter().map(|d| SoftLabels::open(d).unwrap().manifest().rows).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 10_000);
    assert!(sizes.iter().all(|&n| (3_000..3_700).contains(&n)), "{sizes:?}");

    let merged = tmp.path().join("merged");
    // Shards given out of order: merge orders them by index.
    let o = softlabel(&["merge", "--out", s(&merged), s(&shard_dirs[2]), s(&shard_dirs[0]), s(&shard_dirs[1])]);
    assert_ok(&o);
    assert_eq!(rows_by_id(&merged), rows_by_id(&whole));
    let m = SoftLabels::open(&merged).unwrap();
    assert_eq!(m.manifest().shard, None);
    assert_eq!(m.manifest().rows, 10_000);

    // Refusals: a missing shard, a shard given twice, a dataset from another teacher.
    let o = softlabel(&["merge", "--out", s(&tmp.path().join("m2")), s(&shard_dirs[0]), s(&shard_dirs[1])]);
    assert_fails(&o, "missing shard(s) 2/3");
    let o = softlabel(&[
        "merge",
        "--out",
        s(&tmp.path().join("m3")),
        s(&shard_dirs[0]),
        s(&shard_dirs[0]),
        s(&shard_dirs[1]),
    ]);
    assert_fails(&o, "shard 0/3 is also");
    let o = softlabel(&["merge", "--out", s(&tmp.path().join("m4")), s(&whole), s(&merged)]);
    assert_fails(&o, "also appears in an earlier input");
}

#[test]
fn resume_refuses_changed_settings_and_completes_a_finished_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    let run = |extra: &[&str]| precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, extra);
    assert_ok(&run(&["--rows-per-part", "64"]));
    // Resuming a complete dataset with the same settings is a no-op.
    let before = std::fs::read(out.join("_manifest.json")).unwrap();
    assert_ok(&run(&["--rows-per-part", "64", "--resume"]));
    assert_eq!(before, std::fs::read(out.join("_manifest.json")).unwrap());
    // An interrupted run (journal, no manifest): the journal's settings must match.
    std::fs::remove_file(out.join("_manifest.json")).unwrap();
    let progress = serde_json::json!({
        "format": "softlabel-progress", "source_rows_done": 64, "batch_size": 256, "rows_per_part": 64,
        "manifest": serde_json::from_slice::<serde_json::Value>(&before).unwrap(),
    });
    std::fs::write(out.join("_progress.json"), progress.to_string()).unwrap();
    let o = run(&["--rows-per-part", "32", "--resume"]);
    assert_fails(&o, "--rows-per-part 32 differs from the interrupted run's 64");
    let o = precompute(s(&fx("linear_image.onnx")), &fx("small.parquet"), &out, &["--rows-per-part", "64", "--resume"]);
    assert_fails(&o, "cannot resume: the teacher (sha256) differs");
    let o = run(&["--resume", "--overwrite"]);
    assert_fails(&o, "--resume and --overwrite exclude each other");
}

#[test]
fn train_killed_after_a_checkpoint_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--labels",
            s(&labels),
            "--out",
            s(out),
            "--hidden",
            "256",
            "--epochs",
            "8",
            "--batch-size",
            "32",
            "--threads",
            "2",
            "--seed",
            "5",
            "--quiet",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let whole = tmp.path().join("whole");
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&whole)).output().unwrap());
    assert!(!whole.join("checkpoint.json").exists(), "checkpoints are removed once the student is saved");

    let killed = tmp.path().join("killed");
    kill_when(&args(&killed), "checkpoint of epoch 2", || {
        std::fs::read_to_string(killed.join("checkpoint.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["epochs_done"].as_u64())
            .is_some_and(|done| done >= 2)
    });
    assert!(!killed.join("student.json").exists(), "the run finished before it was killed: the test proves nothing");

    let mut resume = args(&killed);
    resume.push("--resume".into());
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(&resume).output().unwrap());
    assert_eq!(
        std::fs::read(whole.join("student.safetensors")).unwrap(),
        std::fs::read(killed.join("student.safetensors")).unwrap(),
        "resumed training must reach the uninterrupted run's weights exactly"
    );
    let log = |d: &Path| std::fs::read_to_string(d.join("train_log.jsonl")).unwrap().lines().count();
    assert_eq!(log(&killed), 8);

    // A checkpoint made with other settings is refused.
    let other = tmp.path().join("other");
    let mut child = Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&other)).spawn().unwrap();
    while !other.join("checkpoint.json").exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut changed = args(&other);
    changed.extend(["--resume".to_string(), "--lr".to_string(), "0.002".to_string()]);
    let o = Command::new(env!("CARGO_BIN_EXE_softlabel")).args(&changed).output().unwrap();
    assert_fails(&o, "cannot resume: the training settings differ");
}

#[test]
fn exported_onnx_student_matches_the_rust_forward_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    assert_ok(&softlabel(&[
        "precompute",
        "--teacher",
        s(&mnist("teachers/mnist_cnn.onnx")),
        "--data",
        s(&mnist("mnist/test.parquet")),
        "--input-column",
        "image",
        "--temperature",
        "4",
        "--out",
        s(&labels),
    ]));
    // The MLP, a CNN with fully connected layers, a CNN with global average pooling, and a batch-normalised
    // CNN (its running statistics folded into the exported convolutions).
    let kinds: [&[&str]; 4] = [
        &["--hidden", "64,32"],
        &["--student", "cnn", "--channels", "4,8", "--hidden", "16"],
        &["--student", "cnn", "--channels", "4,8,8", "--hidden", ""],
        &["--student", "cnn", "--channels", "4,8", "--hidden", "16", "--batch-norm"],
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let st = tmp.path().join(format!("student-{i}"));
        let args = ["train", "--labels", s(&labels), "--out", s(&st), "--epochs", "1", "--memory-budget", "64"];
        assert_ok(&softlabel(&[&args[..], kind].concat()));
        let onnx = tmp.path().join(format!("export-{i}/student.onnx"));
        exported_matches_rust(&st, &onnx);
    }
}

/// Exports `st` to `onnx` and checks ONNX Runtime's logits against the Rust forward pass on MNIST's test rows.
fn exported_matches_rust(st: &Path, onnx: &Path) {
    // The exported model takes the teacher's input as the teacher declares it: float32 `image`
    // [batch, 1, 28, 28] (the stored pixels are uint8; the teacher's signature wins, so it drops in).
    let signature = ("image", softlabel::data::ElementType::F32, &[-1, 1, 28, 28][..]);
    export_matches_rust(st, onnx, &mnist("mnist/test.parquet"), signature);
}

/// Exports `st` to `onnx`, checks the model's input signature (name, type, shape) and ONNX Runtime's
/// logits against the Rust forward pass on the rows of `data`.
pub fn export_matches_rust(
    st: &Path,
    onnx: &Path,
    data: &Path,
    (name, ty, shape): (&str, softlabel::data::ElementType, &[i64]),
) {
    use softlabel::data::DataSpec;
    use softlabel::teacher::{Teacher, TeacherOptions};
    assert_ok(&softlabel(&["export", "--student", s(st), "--out", s(onnx)]));
    assert!(onnx.with_extension("safetensors").is_file());
    let student = softlabel::student::io::load(st).unwrap();
    let mut model = Teacher::load(onnx, &TeacherOptions::default()).unwrap();
    assert_eq!(model.input_shape(), shape);
    assert_eq!((model.input_name(), model.input_element_type()), (name, ty));
    let source = softlabel::data::open(data, &DataSpec::new(name)).unwrap();
    let d: usize = shape[1..].iter().product::<i64>() as usize;
    let row_shape = model.row_shape(d, name).unwrap();
    let mut worst = 0f32;
    for batch in source.batches(1000) {
        let batch = batch.unwrap();
        let (ort_logits, k) = model.run(&batch, &row_shape).unwrap();
        assert_eq!(k, student.student.num_classes());
        let x = ndarray::Array2::from_shape_vec((batch.len(), d), batch.input_f32()).unwrap();
        let rust = student.student.forward(x.view());
        for (a, b) in ort_logits.iter().zip(rust.iter()) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    // Same weights, different summation order (ONNX Runtime's GEMM vs matrixmultiply) in f32.
    assert!(
        worst < 1e-5,
        "{}: largest difference between ONNX Runtime and the Rust forward pass: {worst}",
        st.display()
    );
}

/// Every row's logits and soft probabilities of a dataset, in id order.
fn logits_and_soft(dir: &Path) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    let d = SoftLabels::open(dir).unwrap().load().unwrap();
    let t = SoftLabels::open(dir).unwrap().manifest().temperature;
    let logits: Vec<Vec<f32>> = d.dense_logits().unwrap().rows().into_iter().map(|r| r.to_vec()).collect();
    let soft = logits
        .iter()
        .map(|z| {
            let mut p = vec![0f32; z.len()];
            softlabel::soften::softmax_t(z, t, &mut p);
            p.into_iter().map(f64::from).collect()
        })
        .collect();
    (logits, soft)
}

fn log_softmax64(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

#[test]
fn probability_and_log_probability_teachers_are_detected_and_stored_as_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let lin = Linear::load();
    let x = SoftLabels::open(&{
        let d = tmp.path().join("plain");
        assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &d, &[]));
        d
    })
    .unwrap()
    .load()
    .unwrap()
    .inputs;
    let (_, plain_soft) = logits_and_soft(&tmp.path().join("plain"));
    for (model, kind) in [("softmax_teacher.onnx", "probs"), ("logsoftmax_teacher.onnx", "log-probs")] {
        let out = tmp.path().join(model);
        assert_ok(&precompute(s(&fx(model)), &fx("small.parquet"), &out, &[]));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(m["teacher"]["output_kind"], kind, "{model}");
        // Stored logits are log p = log_softmax(x W + b) (f64 reference); soft equals the plain teacher's.
        let (logits, soft) = logits_and_soft(&out);
        for (i, row) in x.rows().into_iter().enumerate() {
            let want = log_softmax64(&lin.logits(row.as_slice().unwrap()));
            for (a, b) in logits[i].iter().zip(&want) {
                assert!((f64::from(*a) - b).abs() < 1e-5, "{model} row {i}: {a} vs {b}");
            }
            for (a, b) in soft[i].iter().zip(&plain_soft[i]) {
                assert!((a - b).abs() < 1e-6, "{model} row {i}: soft {a} vs {b}");
            }
        }
    }
    // Forcing --teacher-output logits stores the probabilities as they are.
    let forced = tmp.path().join("forced");
    assert_ok(&precompute(
        s(&fx("softmax_teacher.onnx")),
        &fx("small.parquet"),
        &forced,
        &["--teacher-output", "logits"],
    ));
    let (logits, _) = logits_and_soft(&forced);
    assert!(logits.iter().all(|r| r.iter().all(|&v| (0.0..=1.0).contains(&v))));
}

#[test]
fn saturated_probabilities_give_minus_infinity_logits_never_nan() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sat");
    assert_ok(&precompute(s(&fx("saturated_softmax_teacher.onnx")), &fx("small.parquet"), &out, &[]));
    let (logits, soft) = logits_and_soft(&out);
    let minus_inf = logits.iter().flatten().filter(|v| **v == f32::NEG_INFINITY).count();
    assert!(minus_inf > 0, "the fixture should saturate some probabilities to exactly 0");
    assert!(logits.iter().flatten().all(|v| !v.is_nan()));
    for p in &soft {
        assert!(p.iter().all(|v| v.is_finite()));
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6);
    }
    // A student trains on them with a finite loss.
    let st = tmp.path().join("st");
    let o = softlabel(&["train", "--labels", s(&out), "--out", s(&st), "--hidden", "8", "--epochs", "2", "--json"]);
    assert_ok(&o);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(info["final_epoch"]["train_loss"].as_f64().unwrap().is_finite());
}

#[test]
fn ensembles_average_logits_or_probabilities_and_record_every_member() {
    let tmp = tempfile::tempdir().unwrap();
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx("linear.json")).unwrap()).unwrap();
    let m = |key: &str| -> Vec<Vec<f64>> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect()
    };
    let second = Linear { w: m("W2"), b: v["B2"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let first = Linear::load();
    for combine in ["mean-logits", "mean-probs"] {
        let out = tmp.path().join(combine);
        let o = softlabel(&[
            "precompute",
            "--teacher",
            s(&fx("linear.onnx")),
            "--teacher",
            s(&fx("linear_b.onnx")),
            "--combine",
            combine,
            "--data",
            s(&fx("small.parquet")),
            "--temperature",
            "2",
            "--out",
            s(&out),
        ]);
        assert_ok(&o);
        let ds = SoftLabels::open(&out).unwrap();
        let man = ds.manifest();
        let ens = man.ensemble.as_ref().expect("ensemble recorded");
        assert_eq!(ens.members.len(), 2);
        assert_eq!(ens.members[0].file, "linear.onnx");
        assert_eq!(ens.members[1].file, "linear_b.onnx");
        assert_ne!(ens.members[0].sha256, ens.members[1].sha256);
        assert_eq!(man.teacher.file, "linear.onnx+linear_b.onnx");
        let d = ds.load().unwrap();
        for (i, row) in d.inputs.rows().into_iter().enumerate() {
            let (a, b) = (first.logits(row.as_slice().unwrap()), second.logits(row.as_slice().unwrap()));
            let want: Vec<f64> = if combine == "mean-logits" {
                a.iter().zip(&b).map(|(x, y)| (x + y) / 2.0).collect()
            } else {
                let (pa, pb) = (log_softmax64(&a), log_softmax64(&b));
                pa.iter().zip(&pb).map(|(x, y)| ((x.exp() + y.exp()) / 2.0).ln()).collect()
            };
            for (k, w) in want.iter().enumerate() {
                let got = f64::from(d.dense_logits().unwrap()[[i, k]]);
                assert!((got - w).abs() < 1e-5, "{combine} row {i}: {got} vs {w}");
            }
        }
    }
    // Members must agree on the number of classes.
    let o = softlabel(&[
        "precompute",
        "--teacher",
        s(&fx("linear.onnx")),
        "--teacher",
        s(&fx("linear_k4.onnx")),
        "--data",
        s(&fx("small.parquet")),
        "--temperature",
        "2",
        "--out",
        s(&tmp.path().join("bad")),
    ]);
    assert_fails(&o, "linear_k4.onnx: has 4 classes, the first teacher 3");
}

#[test]
fn top_k_and_sampled_labels_store_exact_values_and_train() {
    use softlabel::store::Outputs;
    let tmp = tempfile::tempdir().unwrap();
    let lin = Linear::load();
    let topk = tmp.path().join("topk");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &topk, &["--top-k", "2"]));
    let ds = SoftLabels::open(&topk).unwrap();
    // Labelled rows: the label's logit is stored beside the top k (schema 2.11).
    assert_eq!(ds.manifest().schema_version, "2.11");
    assert!(ds.manifest().label_logit);
    let d = ds.load().unwrap();
    let Outputs::TopK { index, logit, logsumexp_t, label_logit } = &d.outputs else { panic!("not top-k") };
    let label_logit = label_logit.as_ref().expect("labelled rows store the label's logit");
    for (i, row) in d.inputs.rows().into_iter().enumerate() {
        let z = lin.logits(row.as_slice().unwrap());
        let label = d.labels[i].expect("small.parquet is labelled") as usize;
        assert!((f64::from(label_logit[i]) - z[label]).abs() < 1e-5, "row {i}: label logit {}", label_logit[i]);
        let mut order: Vec<usize> = (0..3).collect();
        order.sort_by(|a, b| z[*b].total_cmp(&z[*a]));
        assert_eq!(index.row(i).iter().map(|&c| c as usize).collect::<Vec<_>>(), order[..2].to_vec(), "row {i}");
        for (j, &c) in order[..2].iter().enumerate() {
            assert!((f64::from(logit[[i, j]]) - z[c]).abs() < 1e-5);
        }
        // The exact normaliser over all classes at T = 2 (f64 reference).
        let lse = z.iter().map(|v| (v / 2.0).exp()).sum::<f64>().ln();
        assert!((logsumexp_t[i] - lse).abs() < 1e-5, "row {i}: {} vs {lse}", logsumexp_t[i]);
    }
    assert_ok(&softlabel(&["verify", s(&topk)]));

    // Sampled: the draws depend on (seed, id) only, not on the batch size.
    let a = tmp.path().join("sampled-a");
    let b = tmp.path().join("sampled-b");
    assert_ok(&precompute(
        s(&fx("linear.onnx")),
        &fx("small.parquet"),
        &a,
        &["--sample-k", "6", "--sample-seed", "9", "--batch-size", "7"],
    ));
    assert_ok(&precompute(
        s(&fx("linear.onnx")),
        &fx("small.parquet"),
        &b,
        &["--sample-k", "6", "--sample-seed", "9", "--batch-size", "64"],
    ));
    let draws = |dir: &Path| match SoftLabels::open(dir).unwrap().load().unwrap().outputs {
        Outputs::Sampled { index } => index,
        _ => panic!("not sampled"),
    };
    assert_eq!(draws(&a), draws(&b));
    assert!(
        draws(&a).rows().into_iter().all(|r| r.to_vec().windows(2).all(|w| w[0] <= w[1])),
        "draws are stored ascending"
    );

    // Both train; their temperature is fixed.
    for dir in [&topk, &a] {
        let st = dir.with_extension("student");
        assert_ok(&softlabel(&[
            "train",
            "--labels",
            s(dir),
            "--out",
            s(&st),
            "--hidden",
            "16",
            "--epochs",
            "30",
            "--batch-size",
            "32",
            "--lr",
            "0.01",
            "--alpha",
            "0.7",
        ]));
        let e = softlabel(&["eval", "--student", s(&st), "--data", s(&fx("small.parquet")), "--json"]);
        let r: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
        assert!(r["accuracy"].as_f64().unwrap() > 0.8, "{}: {r}", dir.display());
        let other = tmp.path().join("other-student");
        let o = softlabel(&["train", "--labels", s(dir), "--out", s(&other), "--temperature", "5"]);
        assert_fails(&o, "sparse labels made at T = 2");
    }
    let o = precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &tmp.path().join("k9"), &["--top-k", "9"]);
    assert_fails(&o, "--top-k 9 must be in 1..=3");
}

#[test]
fn label_only_datasets_join_their_source_by_id() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let bare = tmp.path().join("bare");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &full, &[]));
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &bare, &["--no-inputs"]));
    let bytes = |d: &Path| SoftLabels::open(d).unwrap().manifest().parts.iter().map(|p| p.bytes).sum::<u64>();
    assert!(bytes(&bare) < bytes(&full));
    let train = |labels: &Path, out: &Path, extra: &[&str]| {
        let mut args =
            vec!["train", "--labels", s(labels), "--out", s(out), "--hidden", "8", "--epochs", "3", "--threads", "1"];
        args.extend_from_slice(extra);
        softlabel(&args)
    };
    let o = train(&bare, &tmp.path().join("x"), &[]);
    assert_fails(&o, "was made with --no-inputs: pass --inputs");
    // Joined by id, the student learns exactly what it learns from the dataset that stores the inputs.
    assert_ok(&train(&full, &tmp.path().join("a"), &[]));
    assert_ok(&train(&bare, &tmp.path().join("b"), &["--inputs", s(&fx("small.parquet"))]));
    assert_eq!(
        std::fs::read(tmp.path().join("a/student.safetensors")).unwrap(),
        std::fs::read(tmp.path().join("b/student.safetensors")).unwrap()
    );
    // Other data (same ids, other values) is refused unless the fingerprint check is overridden.
    let o = train(&bare, &tmp.path().join("c"), &["--inputs", s(&fx("ints.parquet"))]);
    assert_fails(&o, "ints.parquet: fingerprint");
    assert_ok(&train(&bare, &tmp.path().join("c"), &["--inputs", s(&fx("ints.parquet")), "--ignore-fingerprint"]));
}

#[test]
fn float16_storage_stays_within_half_precision_of_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("f16");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &out, &["--float16"]));
    assert_ok(&softlabel(&["verify", s(&out)]));
    let lin = Linear::load();
    let d = SoftLabels::open(&out).unwrap().load().unwrap();
    for (i, row) in d.inputs.rows().into_iter().enumerate() {
        for (k, want) in lin.logits(row.as_slice().unwrap()).iter().enumerate() {
            // float16 keeps 11 significant bits: relative error <= 2^-11 (plus the f32 computation's).
            let got = f64::from(d.dense_logits().unwrap()[[i, k]]);
            assert!((got - want).abs() <= want.abs() * 2f64.powi(-11) + 1e-4, "row {i}: {got} vs {want}");
        }
    }
    assert_ok(&softlabel(&[
        "train",
        "--labels",
        s(&out),
        "--out",
        s(&tmp.path().join("st")),
        "--hidden",
        "8",
        "--epochs",
        "2",
    ]));
}

#[test]
fn views_store_shifted_rows_with_exact_logits_and_rebuild_from_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let full = tmp.path().join("full");
    let bare = tmp.path().join("bare");
    let views = ["--views", "4", "--max-shift", "1", "--image", "2x2", "--view-seed", "5", "--rows-per-part", "30"];
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &full, &views));
    let ds = SoftLabels::open(&full).unwrap();
    let m = ds.manifest();
    assert_eq!((m.schema_version.as_str(), m.rows), ("2.2", 800));
    // Parts hold whole groups of views (30 rounded up to 32).
    assert!(m.parts.iter().rev().skip(1).all(|p| p.rows == 32), "{:?}", m.parts);
    // Every stored input is its source row shifted as recorded (checked independently of the library's
    // shift code: out[y][x] = in[y - dy][x - dx] on the 2x2 image), and its logits are the f64 reference's.
    check_against_reference(&full, 800);
    let stored = ds.load().unwrap();
    let source =
        softlabel::data::open(&fx("small.parquet"), &softlabel::data::DataSpec::new(softlabel::store::columns::INPUT))
            .unwrap();
    let mut by_id = std::collections::HashMap::new();
    for b in source.batches(1000) {
        let b = b.unwrap();
        let flat = b.input_f32();
        for (i, id) in b.ids.iter().enumerate() {
            by_id.insert(*id, flat[i * 4..(i + 1) * 4].to_vec());
        }
    }
    let v = stored.views.as_ref().unwrap();
    let mut shifted = 0;
    for r in 0..stored.ids.len() {
        let (dx, dy) = (i64::from(v.shift_x[r]), i64::from(v.shift_y[r]));
        assert!(dx.abs() <= 1 && dy.abs() <= 1);
        assert_eq!(v.view[r] as usize, r % 4, "views of a row are stored together, in order");
        if v.view[r] == 0 {
            assert_eq!((dx, dy), (0, 0));
        }
        shifted += usize::from((dx, dy) != (0, 0));
        let src = &by_id[&stored.ids[r]];
        for y in 0..2i64 {
            for x in 0..2i64 {
                let (sy, sx) = (y - dy, x - dx);
                let want = if (0..2).contains(&sy) && (0..2).contains(&sx) { src[(sy * 2 + sx) as usize] } else { 0.0 };
                assert_eq!(stored.inputs[[r, (y * 2 + x) as usize]], want, "row {r}");
            }
        }
    }
    assert!(shifted > 400, "most views 1..3 are shifted: {shifted}");
    assert_ok(&softlabel(&["verify", s(&full)]));

    // Label-only views: train --inputs rebuilds each view from its source row, giving identical weights.
    assert_ok(&precompute(
        s(&fx("linear.onnx")),
        &fx("small.parquet"),
        &bare,
        &[&views[..], &["--no-inputs"]].concat(),
    ));
    let train = |labels: &Path, out: &Path, extra: &[&str]| {
        let mut args =
            vec!["train", "--labels", s(labels), "--out", s(out), "--hidden", "8", "--epochs", "2", "--threads", "1"];
        args.extend_from_slice(extra);
        softlabel(&args)
    };
    assert_ok(&train(&full, &tmp.path().join("a"), &[]));
    assert_ok(&train(&bare, &tmp.path().join("b"), &["--inputs", s(&fx("small.parquet"))]));
    assert_eq!(
        std::fs::read(tmp.path().join("a/student.safetensors")).unwrap(),
        std::fs::read(tmp.path().join("b/student.safetensors")).unwrap()
    );

    // Flat teachers need the image layout; a layout that does not hold the row is refused.
    let o = precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &tmp.path().join("x"), &["--views", "2"]);
    assert_fails(&o, "pass --image");
    let o = precompute(
        s(&fx("linear.onnx")),
        &fx("small.parquet"),
        &tmp.path().join("y"),
        &["--views", "2", "--image", "3x3"],
    );
    assert_fails(&o, "holds 9 values, the input rows have 4");
    // An image-shaped teacher gives the layout itself.
    assert_ok(&precompute(
        s(&fx("linear_image.onnx")),
        &fx("small.parquet"),
        &tmp.path().join("z"),
        &["--views", "2", "--max-shift", "1"],
    ));
}

#[test]
fn omitted_class_transfer_set_and_bias_adjustment() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &labels, &[]));
    let student = tmp.path().join("student");
    let o = softlabel(&[
        "train",
        "--labels",
        s(&labels),
        "--out",
        s(&student),
        "--hidden",
        "8",
        "--epochs",
        "3",
        "--threads",
        "1",
        "--exclude-labels",
        "2",
        "--json",
    ]);
    assert_ok(&o);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = SoftLabels::open(&labels).unwrap().load().unwrap();
    let without_2 = all.labels.iter().filter(|l| **l != Some(2)).count() as u64;
    assert!(without_2 < 200);
    assert_eq!(info["train_rows"], without_2, "rows labeled 2 are left out");
    assert_eq!(info["settings"]["exclude_labels"], serde_json::json!([2]));

    // --by adds exactly that to the class's output bias and nothing else.
    let adjusted = tmp.path().join("adjusted");
    let o = softlabel(&["adjust-bias", "--student", s(&student), "--class", "2", "--by", "1.5", "--out", s(&adjusted)]);
    assert_ok(&o);
    let (a, b) = (softlabel::student::io::load(&student).unwrap(), softlabel::student::io::load(&adjusted).unwrap());
    let (ta, tb) = (a.student.tensors(), b.student.tensors());
    let last_bias = ta.iter().rposition(|(n, ..)| n.ends_with(".bias")).unwrap();
    let (la, lb) = (&ta[last_bias].2, &tb[last_bias].2);
    assert_eq!(lb[2], la[2] + 1.5);
    assert_eq!((lb[0], lb[1]), (la[0], la[1]));
    let others = |t: &[softlabel::student::Tensor]| {
        t.iter().enumerate().filter(|&(i, _)| i != last_bias).map(|(_, x)| x.clone()).collect::<Vec<_>>()
    };
    assert_eq!(others(&ta), others(&tb), "only the output bias may change");
    assert_eq!(b.info.bias_adjustments.len(), 1);

    // --tune-on never makes the tuning data's errors worse, and the reported count is what eval measures.
    let tuned = tmp.path().join("tuned");
    let o = softlabel(&[
        "adjust-bias",
        "--student",
        s(&student),
        "--class",
        "2",
        "--tune-on",
        s(&fx("small.parquet")),
        "--out",
        s(&tuned),
        "--json",
    ]);
    assert_ok(&o);
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (before, after) =
        (t["tuning"]["errors_before"].as_u64().unwrap(), t["tuning"]["errors_after"].as_u64().unwrap());
    assert!(after <= before, "{t}");
    let eval = |dir: &Path| -> serde_json::Value {
        let o = softlabel(&["eval", "--student", s(dir), "--data", s(&fx("small.parquet")), "--json"]);
        assert_ok(&o);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    assert_eq!(eval(&student)["errors"].as_u64().unwrap(), before);
    let e = eval(&tuned);
    assert_eq!(e["errors"].as_u64().unwrap(), after);
    // Per-class errors add up to the total.
    let per_class: u64 = e["class_errors"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(per_class, after);

    let o = softlabel(&["adjust-bias", "--student", s(&student), "--class", "7", "--by", "1", "--out", s(&tuned)]);
    assert_fails(&o, "--class 7 is outside the student's 3 classes");
}

#[test]
fn training_streams_datasets_over_the_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let train = |out: &str, budget: &str| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_softlabel"))
            .args([
                "--quiet",
                "train",
                "--labels",
                s(&labels),
                "--out",
                s(&tmp.path().join(out)),
                "--hidden",
                "64",
                "--epochs",
                "2",
                "--threads",
                "1",
                "--exclude-labels",
                "3",
                "--memory-budget",
                budget,
                "--json",
            ])
            .env("RUST_LOG", "softlabel=info")
            .output()
            .unwrap();
        assert_ok(&o);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.contains("streaming"), budget != "4096", "{err}");
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // 10k rows need ~31 MiB: 4096 MiB holds them; 4 MiB streams them, in windows of 512 rows (3/8 of 4 MiB
    // is 476 rows of 3304 bytes, rounded up to whole batches).
    let (memory, stream) = (train("memory", "4096"), train("stream", "4"));
    assert_eq!(memory["train_rows"], stream["train_rows"], "the same rows are left out");
    assert!(memory["train_rows"].as_u64().unwrap() < 9_000);
    let weights = |d: &str| softlabel::student::io::load(&tmp.path().join(d)).unwrap().student.tensors();
    let (a, b) = (weights("memory"), weights("stream"));
    // The input scaling (the first two tensors, input.shift and input.scale) comes from the same sums in
    // the same order.
    assert_eq!((&a[0], &a[1]), (&b[0], &b[1]));
    assert_eq!((a[0].0.as_str(), a[1].0.as_str()), ("input.shift", "input.scale"));
    // Both learn (the order of rows differs, so the weights do).
    let errors = |d: &str| {
        let o = softlabel(&["eval", "--student", s(&tmp.path().join(d)), "--data", s(&labels), "--json"]);
        assert_ok(&o);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["accuracy"].as_f64().unwrap()
    };
    let (acc_m, acc_s) = (errors("memory"), errors("stream"));
    // The 3s (a tenth of the rows) were left out of training, so about 0.9 is the ceiling.
    assert!(acc_m > 0.75 && acc_s > 0.75 && (acc_m - acc_s).abs() < 0.03, "memory {acc_m}, stream {acc_s}");
    // Streaming is deterministic too.
    train("stream2", "4");
    assert_eq!(
        std::fs::read(tmp.path().join("stream/student.safetensors")).unwrap(),
        std::fs::read(tmp.path().join("stream2/student.safetensors")).unwrap()
    );
}

/// A streamed window is decoded in pieces on the rayon workers: with 2 workers the windows (rows, order,
/// inputs, teacher outputs) are exactly those one worker reads block by block, the filter and the rows
/// carried from one window to the next included.
#[test]
fn windows_decoded_in_pieces_are_those_read_block_by_block() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let ds = SoftLabels::open(&labels).unwrap();
    let mut blocks = ds.blocks(4096).unwrap();
    blocks.reverse();
    let filter = softlabel::store::RowFilter { exclude_labels: vec![3], ..Default::default() };
    let read = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| ds.windows(&blocks, 3000, &filter).map(Result::unwrap).collect::<Vec<_>>())
    };
    let (one, two) = (read(1), read(2));
    assert!(one.len() >= 3, "several windows: {}", one.len());
    assert_eq!(one.iter().map(|w| w.len()).collect::<Vec<_>>(), two.iter().map(|w| w.len()).collect::<Vec<_>>());
    for (a, b) in one.iter().zip(&two) {
        assert_eq!((&a.ids, &a.labels, &a.inputs), (&b.ids, &b.labels, &b.inputs));
        assert_eq!(format!("{:?}", a.outputs), format!("{:?}", b.outputs));
        assert!(a.labels.iter().all(|&l| l != Some(3)), "the filter applies");
    }
}

/// Labels meet data in `eval --labels` and `report --labels`, matched by id: labels made from other data
/// (the train split's labels against the test split) are refused with both fingerprints, while the same
/// rows in other files (the fixture's folder copy) are accepted. On main before this check, the first
/// `eval` exited 0 with a meaningless teacher accuracy.
#[test]
fn labels_made_from_other_data_are_refused_where_data_meets_labels() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    use arrow_array::Array;
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    let student = tmp.path().join("student");
    let (teacher, small) = (fx("linear.onnx"), fx("small.parquet"));
    let pre = ["precompute", "--teacher", s(&teacher), "--data", s(&small), "--temperature", "2", "--out", s(&labels)];
    assert_ok(&softlabel(&pre));
    assert_ok(&softlabel(&["train", "--labels", s(&labels), "--out", s(&student), "--hidden", "8", "--epochs", "1"]));
    // Other data with the same ids: one row's input changed.
    let other = tmp.path().join("other.parquet");
    let file = std::fs::File::open(fx("small.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<arrow_array::RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let batch = arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap();
    let i = batch.schema().index_of("input").unwrap();
    let list = batch.column(i).as_fixed_size_list();
    let mut values = list.values().as_primitive::<Float32Type>().values().to_vec();
    values[3 * 4] += 1.0;
    let field = match list.data_type() {
        arrow_schema::DataType::FixedSizeList(f, _) => f.clone(),
        _ => unreachable!(),
    };
    let changed = arrow_array::FixedSizeListArray::new(
        field,
        4,
        std::sync::Arc::new(arrow_array::Float32Array::from(values)),
        None,
    );
    let mut cols = batch.columns().to_vec();
    cols[i] = std::sync::Arc::new(changed);
    let changed = arrow_array::RecordBatch::try_new(batch.schema(), cols).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&other).unwrap(), changed.schema(), None).unwrap();
    w.write(&changed).unwrap();
    w.close().unwrap();

    let eval = |data: &Path| softlabel(&["eval", "--student", s(&student), "--labels", s(&labels), "--data", s(data)]);
    let o = eval(&other);
    assert_fails(&o, "other.parquet: is not the data the labels were made from: its fingerprint is");
    assert_fails(&o, "the row with id 1003 holds another input than the labels'");
    assert_ok(&eval(&fx("small.parquet")));
    assert_ok(&eval(&fx("small_dir")));
    let report = |data: &Path| {
        let out = tmp.path().join("report");
        softlabel(&[
            "report",
            "--teacher",
            s(&teacher),
            "--student",
            s(&student),
            "--data",
            s(data),
            "--labels",
            s(&labels),
            "--out",
            s(&out),
        ])
    };
    assert_fails(&report(&other), "other.parquet: is not the data the labels were made from");
    assert_ok(&report(&fx("small_dir")));
    // report.md says larger or smaller in words (the student here is the bigger model: it said "0.2x
    // fewer" before, issue 14 trap 4) and names the errors, the architecture and the settings.
    let md = std::fs::read_to_string(tmp.path().join("report/report.md")).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report/report.json")).unwrap()).unwrap();
    assert!(r["student"]["parameters"].as_u64() > r["teacher"]["parameters"].as_u64(), "{r}");
    let row = md.lines().find(|l| l.starts_with("| parameters |")).unwrap();
    assert!(row.ends_with("x more |") && !md.contains("x fewer"), "{md}");
    assert!(md.contains("| errors |") && md.contains("- architecture: MLP 4-8-3 (ReLU)"), "{md}");
    assert!(md.contains("alpha = 0.9: 1 epoch(s) of batch 128, Adam"), "{md}");
}

/// Messages say what to do (issue 14, trap 6); each of these failed on main before.
#[test]
fn messages_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("labels");
    let (teacher, small) = (fx("linear.onnx"), fx("small.parquet"));
    // A negative temperature reaches the check instead of being read as a flag.
    let o = softlabel(&["precompute", "--teacher", s(&teacher), "--data", s(&small), "-T", "-4", "--out", s(&out)]);
    assert_fails(&o, "--temperature must be finite and > 0, got -4");
    // Raw data where labels are expected: say so, and how to make labels.
    let o = softlabel(&["train", "--labels", s(&small), "--out", s(&tmp.path().join("st"))]);
    assert_fails(&o, "small.parquet: is a file, not a soft-label dataset folder; if it is raw data");
    assert_fails(&o, "softlabel precompute --teacher T.onnx --data FILE");
    // A missing input column names the flag that chooses it.
    let o = softlabel(&[
        "precompute",
        "--teacher",
        s(&teacher),
        "--data",
        s(&small),
        "-T",
        "2",
        "--out",
        s(&out),
        "--input-column",
        "pixels",
    ]);
    assert_fails(&o, "no column 'pixels' (columns: id, input, label); choose the input with --input-column NAME");
    // The only list column is the input when there is no `input` column and no --input-column (run
    // without --quiet, which would silence the log line).
    let o = Command::new(env!("CARGO_BIN_EXE_softlabel"))
        .args(["-v", "precompute", "--teacher", s(&teacher), "--data", s(&fx("list_f64.parquet")), "-T", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("using the only list column") && err.contains("features"), "{err}");
    // Logs captured from a pipe carry no colour codes.
    assert!(!err.contains('\u{1b}'), "escape codes in {err:?}");
    // --help keeps the global flags apart from the command's own options.
    let help = String::from_utf8_lossy(&softlabel(&["train", "--help"]).stdout).to_string();
    let (own, global) = help.split_once("Global options:").expect("a Global options heading");
    assert!(!own.contains("--verbose") && !own.contains("--ort-lib"), "{help}");
    assert!(global.contains("--verbose") && global.contains("--quiet"), "{help}");
}

/// Every logit loss (`--loss kd|dkd|jsd|tvd|reverse-kl`) trains a student whose training loss falls and
/// whose settings record the loss; the losses that need the teacher's whole distribution refuse top-k
/// labels, naming why. (Their values and gradients are checked against PyTorch in distill/logit.rs.)
#[test]
fn every_logit_loss_trains_and_the_dense_ones_refuse_sparse_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let (dense, topk) = (tmp.path().join("dense"), tmp.path().join("topk"));
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &dense, &[]));
    assert_ok(&precompute(s(&fx("linear.onnx")), &fx("small.parquet"), &topk, &["--top-k", "2"]));
    for loss in ["kd", "dkd", "jsd", "tvd", "reverse-kl"] {
        let st = tmp.path().join(loss);
        let args = ["train", "--labels", s(&dense), "--out", s(&st), "--loss", loss, "--hidden", "8", "--epochs", "6"];
        assert_ok(&softlabel(&[&args[..], &["--lr", "0.01", "--threads", "1"]].concat()));
        let log: Vec<f64> = std::fs::read_to_string(st.join("train_log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"].as_f64().unwrap())
            .collect();
        assert!(log.last().unwrap() < &log[0], "{loss}: {log:?}");
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(st.join("student.json")).unwrap()).unwrap();
        let recorded = info["settings"]["loss"].clone();
        match loss {
            "kd" => assert!(recorded.is_null(), "{recorded}"),
            "dkd" => assert_eq!(recorded, serde_json::json!({"kind": "dkd", "alpha": 1.0, "beta": 8.0})),
            other => assert_eq!(recorded["kind"], other),
        }
        // dkd takes top-k labels that store the label's logit (schema 2.11); the others need dense ones.
        let o = softlabel(&[
            "train",
            "--labels",
            s(&topk),
            "--out",
            s(&tmp.path().join(format!("k-{loss}"))),
            "--loss",
            loss,
        ]);
        if loss == "kd" || loss == "dkd" {
            assert_ok(&o);
        } else {
            assert_fails(&o, "this loss needs the teacher's whole distribution: dense labels");
        }
    }
    let o = softlabel(&[
        "train",
        "--labels",
        s(&dense),
        "--out",
        s(&tmp.path().join("neg")),
        "--loss",
        "dkd",
        "--dkd-beta=-1",
    ]);
    assert_fails(&o, "--dkd-beta must be finite and >= 0");
}
