//! Students other than the MLP (issue 12): the CNN trains through the same path (checkpoints, resume,
//! validation, sweeps), refuses inputs without an image shape, and exports (tested in
//! `cli::exported_onnx_student_matches_the_rust_forward_pass`).

use std::path::Path;
use std::process::Command;

use crate::cli::{assert_fails, assert_ok, mnist_test_labels, s, softlabel};
use crate::common::{fx, kill_when};

/// A cnn killed after its first checkpoint resumes to the uninterrupted run's weights, with --keep best
/// (the best epoch's weights travel in the checkpoint).
#[test]
fn a_killed_cnn_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let args = |out: &Path| -> Vec<String> {
        let a = [
            "train",
            "--labels",
            s(&labels),
            "--out",
            s(out),
            "--student",
            "cnn",
            "--channels",
            "4,8",
            "--hidden",
            "16",
        ];
        let b =
            ["--epochs", "4", "--threads", "2", "--val-fraction", "0.2", "--keep", "best", "--seed", "2", "--quiet"];
        a.iter().chain(&b).map(|v| v.to_string()).collect()
    };
    let whole = tmp.path().join("whole");
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&whole)).output().unwrap());
    let killed = tmp.path().join("killed");
    kill_when(&args(&killed), "checkpoint", || killed.join("checkpoint.json").exists());
    assert!(!killed.join("student.json").exists(), "the run finished before it was killed: the test proves nothing");
    let mut resume = args(&killed);
    resume.push("--resume".into());
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(&resume).output().unwrap());
    let read = |d: &Path| std::fs::read(d.join("student.safetensors")).unwrap();
    assert_eq!(read(&whole), read(&killed), "resumed training must reach the uninterrupted run's weights");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(whole.join("student.json")).unwrap()).unwrap();
    assert_eq!((info["kind"].as_str(), info["channels"].clone()), (Some("cnn"), serde_json::json!([4, 8])));
    assert_eq!(info["image"], serde_json::json!([1, 28, 28]));
    // It learned: the distilled cnn agrees with the teacher on most held-out rows.
    let agreement = info["final_epoch"]["val_agreement"].as_f64().unwrap();
    assert!(agreement > 0.8, "val agreement {agreement}");
}

#[test]
fn a_cnn_needs_image_shaped_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    let (teacher, data) = (fx("linear.onnx"), fx("small.parquet"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&data), "-T", "2"];
    assert_ok(&softlabel(&[&args[..], &["--out", s(&labels)]].concat()));
    let o = softlabel(&["train", "--labels", s(&labels), "--out", s(&tmp.path().join("st")), "--student", "cnn"]);
    assert_fails(&o, "a cnn student needs image-shaped inputs ([C, H, W] or [H, W]); the labels' input shape is [4]");
    let o = softlabel(&[
        "train",
        "--labels",
        s(&labels),
        "--out",
        s(&tmp.path().join("st")),
        "--student",
        "cnn",
        "--channels",
        "0",
    ]);
    assert_fails(&o, "--channels needs blocks of > 0 channels");
    // --image gives flat rows an image layout: it must hold the row's values.
    let cnn = ["train", "--labels", s(&labels), "--student", "cnn", "--channels", "2", "--epochs", "1", "--alpha", "1"];
    let o = softlabel(&[&cnn[..], &["--out", s(&tmp.path().join("st")), "--image", "1x3x3"]].concat());
    assert_fails(&o, "image [1, 3, 3] does not hold the rows' 4 values");
    let st = tmp.path().join("st2x2");
    assert_ok(&softlabel(&[&cnn[..], &["--out", s(&st), "--image", "2x2"]].concat()));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(st.join("student.json")).unwrap()).unwrap();
    assert_eq!((info["kind"].as_str(), &info["image"]), (Some("cnn"), &serde_json::json!([1, 2, 2])));
    let o = softlabel(&["train", "--labels", s(&labels), "--out", s(&st), "--image", "2x2"]);
    assert_fails(&o, "--image is for cnn students");
}

/// A student folder is input too: a student.json whose cnn shape does not fit its weights (or overflows)
/// is refused with one line naming the file, never a panic.
#[test]
fn a_tampered_cnn_student_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let st = tmp.path().join("st");
    let args =
        ["train", "--labels", s(&labels), "--out", s(&st), "--student", "cnn", "--channels", "2", "--hidden", "8"];
    assert_ok(&softlabel(&[&args[..], &["--epochs", "1"]].concat()));
    let info_path = st.join("student.json");
    let info: serde_json::Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    for (image, expect) in [
        (serde_json::json!([4294967296u64, 4294967296u64, 1]), "holds more values than memory"),
        // 784 values, but 24x8 pixels after the pooling instead of 14x14.
        (serde_json::json!([1, 49, 16]), "tensor 'layers.0.weight' has shape"),
        (serde_json::json!([784]), "a cnn student needs image-shaped inputs"),
    ] {
        let mut bad = info.clone();
        bad["image"] = image;
        std::fs::write(&info_path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let o = softlabel(&["eval", "--student", s(&st), "--data", s(&labels)]);
        assert_fails(&o, expect);
        assert!(String::from_utf8_lossy(&o.stderr).contains("student"), "names the student's file");
    }
}

/// The embed student on int64 token ids (a bag-of-embeddings teacher, id 0 padding): the mean bag with
/// a smaller --vocab (ids 15..19 masked), the max bag, 1-D convolutions with and without hidden layers.
/// Each exports to ONNX with the teacher's int64 `tokens` input and equals the Rust forward pass.
#[test]
fn embed_students_train_and_export_on_token_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    let (teacher, data) = (fx("bag_teacher.onnx"), fx("tokens.parquet"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&data), "--input-column", "tokens", "-T", "2"];
    assert_ok(&softlabel(&[&args[..], &["--out", s(&labels)]].concat()));
    let kinds: [&[&str]; 4] = [
        &["--pad-id", "0", "--vocab", "15", "--hidden", "8"],
        &["--bag", "max", "--hidden", ""],
        &["--pad-id", "0", "--channels", "6,4", "--hidden", "5"],
        &["--channels", "3", "--hidden", ""],
    ];
    for (i, kind) in kinds.iter().enumerate() {
        let st = tmp.path().join(format!("student-{i}"));
        let args = ["train", "--labels", s(&labels), "--out", s(&st), "--epochs", "2", "--student", "embed"];
        let o = softlabel(&[&args[..], &["--embed-dim", "4", "--batch-size", "32", "--alpha", "1"], kind].concat());
        assert_ok(&o);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(st.join("student.json")).unwrap()).unwrap();
        assert_eq!(info["kind"], "embed");
        let vocab = if i == 0 { 15 } else { 20 };
        assert_eq!(info["embed"]["vocab"], vocab, "{info}");
        let onnx = tmp.path().join(format!("export-{i}/student.onnx"));
        let signature = ("tokens", softlabel::data::ElementType::I64, &[-1, 16][..]);
        crate::cli::export_matches_rust(&st, &onnx, &data, signature);
    }
    // Ids must be integers >= 0: the MNIST-like float fixture is refused with the reason.
    let float_labels = tmp.path().join("float-labels");
    let (teacher, data) = (fx("linear.onnx"), fx("small.parquet"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&data), "-T", "2", "--out", s(&float_labels)];
    assert_ok(&softlabel(&args));
    let o =
        softlabel(&["train", "--labels", s(&float_labels), "--out", s(&tmp.path().join("x")), "--student", "embed"]);
    assert_fails(&o, "an embed student reads token ids, but the input holds");
}
