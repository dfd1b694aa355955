//! Students other than the MLP (issue 12): the CNN trains through the same path (checkpoints, resume,
//! validation, sweeps), refuses inputs without an image shape, and exports (tested in
//! `cli::exported_onnx_student_matches_the_rust_forward_pass`).

use std::path::Path;
use std::process::Command;

use crate::cli::{assert_fails, assert_ok, mnist_test_labels, s, softlabel};
use crate::common::{fx, kill_when};

/// A cnn killed after its first checkpoint resumes to the uninterrupted run's weights, with --keep best
/// (the best epoch's weights travel in the checkpoint), with and without batch normalisation (whose
/// running statistics travel too).
#[test]
fn a_killed_cnn_resumes_to_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    for batch_norm in [false, true] {
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
            let b = ["--epochs", "4", "--threads", "2", "--val-fraction", "0.2", "--keep", "best", "--seed", "2"];
            let norm = if batch_norm { &["--batch-norm"][..] } else { &[] };
            a.iter().chain(&b).chain(norm).chain(&["--quiet"]).map(|v| v.to_string()).collect()
        };
        let whole = tmp.path().join(format!("whole-{batch_norm}"));
        assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&whole)).output().unwrap());
        let killed = tmp.path().join(format!("killed-{batch_norm}"));
        kill_when(&args(&killed), "checkpoint", || killed.join("checkpoint.json").exists());
        assert!(
            !killed.join("student.json").exists(),
            "the run finished before it was killed: the test proves nothing"
        );
        let mut resume = args(&killed);
        resume.push("--resume".into());
        assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(&resume).output().unwrap());
        let read = |d: &Path| std::fs::read(d.join("student.safetensors")).unwrap();
        assert_eq!(read(&whole), read(&killed), "resumed training must reach the uninterrupted run's weights");
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(whole.join("student.json")).unwrap()).unwrap();
        assert_eq!((info["kind"].as_str(), info["channels"].clone()), (Some("cnn"), serde_json::json!([4, 8])));
        assert_eq!(info["image"], serde_json::json!([1, 28, 28]));
        assert_eq!(info["batch_norm"].as_bool().unwrap_or(false), batch_norm);
        // It learned: the distilled cnn agrees with the teacher on most held-out rows.
        let agreement = info["final_epoch"]["val_agreement"].as_f64().unwrap();
        assert!(agreement > 0.8, "batch norm {batch_norm}: val agreement {agreement}");
    }
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
    let o = softlabel(&["train", "--labels", s(&labels), "--out", s(&tmp.path().join("st")), "--batch-norm"]);
    assert_fails(&o, "--batch-norm is for cnn students");
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
    // A student.json that claims batch normalisation its weights do not hold.
    let mut bad = info.clone();
    bad["batch_norm"] = serde_json::json!(true);
    std::fs::write(&info_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let o = softlabel(&["eval", "--student", s(&st), "--data", s(&labels)]);
    assert_fails(&o, "norms.0.weight");
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

/// Predictions of the float student (Rust forward) and of an ONNX model of it over every row of `data`:
/// (rows where the top classes agree, rows, largest |logit difference| / largest |float logit|).
fn compare_with_onnx(st: &Path, onnx: &Path, data: &Path, input: &str) -> (usize, usize, f32) {
    use softlabel::teacher::{Teacher, TeacherOptions};
    let student = softlabel::student::io::load(st).unwrap();
    let mut model = Teacher::load(onnx, &TeacherOptions::default()).unwrap();
    let source = softlabel::data::open(data, &softlabel::data::DataSpec::new(input)).unwrap();
    let d = student.student.input_width();
    let row_shape = model.row_shape(d, input).unwrap();
    let top = |r: ndarray::ArrayView1<f32>| r.iter().enumerate().fold(0, |b, (i, v)| if *v > r[b] { i } else { b });
    let (mut agree, mut rows, mut diff, mut scale) = (0, 0, 0f32, 0f32);
    for batch in source.batches(1000) {
        let batch = batch.unwrap();
        let (q, k) = model.run(&batch, &row_shape).unwrap();
        let q = ndarray::Array2::from_shape_vec((batch.len(), k), q.into_vec()).unwrap();
        let x = ndarray::Array2::from_shape_vec((batch.len(), d), batch.input_f32()).unwrap();
        let f = student.student.forward(x.view());
        for (a, b) in q.rows().into_iter().zip(f.rows()) {
            agree += usize::from(top(a) == top(b));
            rows += 1;
            for (x, y) in a.iter().zip(b) {
                diff = diff.max((x - y).abs());
                scale = scale.max(y.abs());
            }
        }
    }
    (agree, rows, diff / scale.max(1e-6))
}

/// `report --int8` puts the int8 export beside the float student: smaller, nearly the same answers.
fn report_measures_int8(st: &Path, labels: &Path, out: &Path) {
    let teacher = crate::cli::mnist("teachers/mnist_cnn.onnx");
    let args = ["report", "--teacher", s(&teacher), "--student", s(st), "--data", s(labels), "--labels", s(labels)];
    assert_ok(&softlabel(&[&args[..], &["--out", s(out), "--int8", "--latency-runs", "20"]].concat()));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let q = &r["student_int8"];
    assert!(q["bytes"].as_u64() < r["student"]["bytes"].as_u64(), "{r}");
    assert!(q["agreement_with_float"].as_f64().unwrap() >= 0.97, "{q}");
    let (a, b) = (q["accuracy"].as_f64().unwrap(), r["student"]["accuracy"].as_f64().unwrap());
    assert!((a - b).abs() < 0.03, "int8 accuracy {a} vs float {b}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## int8 export") && md.contains("Calibrated on 1024 rows of"), "{md}");
    assert!(md.contains("| same top class as float | |"), "{md}");
}

/// `export --int8` for every student kind: int8 weights in the file (bytes saved per parameter), the
/// quantization recorded in its metadata, and ONNX Runtime's integer run agreeing with the float student:
/// same top class on >= 97% of rows, logits within 10% of their range (int8 noise: a 3x3x8 conv with
/// per-channel scales loses ~1% per layer; measured figures are in RESULTS.md).
#[test]
fn int8_export_agrees_with_the_float_student_for_every_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let mnist = tmp.path().join("mnist");
    mnist_test_labels(&mnist);
    let tokens = tmp.path().join("tokens");
    let (bag, token_data) = (fx("bag_teacher.onnx"), fx("tokens.parquet"));
    let args = ["precompute", "--teacher", s(&bag), "--data", s(&token_data)];
    assert_ok(&softlabel(&[&args[..], &["--input-column", "tokens", "-T", "2", "--out", s(&tokens)]].concat()));
    let cases: [(&Path, &[&str]); 5] = [
        (&mnist, &["--hidden", "32"]),
        (&mnist, &["--student", "cnn", "--channels", "4,8", "--hidden", "16"]),
        (&mnist, &["--student", "cnn", "--channels", "4,8", "--hidden", "16", "--batch-norm"]),
        (&tokens, &["--student", "embed", "--embed-dim", "32", "--pad-id", "0", "--hidden", "64"]),
        (&tokens, &["--student", "embed", "--embed-dim", "16", "--channels", "32", "--hidden", ""]),
    ];
    for (i, (labels, kind)) in cases.iter().enumerate() {
        let st = tmp.path().join(format!("student-{i}"));
        let args = ["train", "--labels", s(labels), "--out", s(&st), "--epochs", "3", "--alpha", "1"];
        assert_ok(&softlabel(&[&args[..], kind].concat()));
        let (fp32, int8) = (tmp.path().join(format!("s{i}.onnx")), tmp.path().join(format!("s{i}-int8.onnx")));
        assert_ok(&softlabel(&["export", "--student", s(&st), "--out", s(&fp32)]));
        let o = softlabel(&["export", "--student", s(&st), "--out", s(&int8), "--int8"]);
        assert_ok(&o);
        // The first 1024 stored inputs (all 300 of the token fixture).
        let rows = if *labels == mnist.as_path() { 1024 } else { 300 };
        assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("calibrated on {rows} rows")), "{o:?}");
        let bytes = std::fs::read(&int8).unwrap();
        // A weight takes 1 byte instead of 4; per-channel scales, zero points, int32 biases and the QDQ
        // nodes weigh on these 3k-7k-parameter students (measured: 1.97 to 2.3 bytes saved per parameter;
        // float weights would save none).
        let params = softlabel::student::io::load(&st).unwrap().student.num_parameters() as f64;
        let saved = (std::fs::metadata(&fp32).unwrap().len() as f64 - bytes.len() as f64) / params;
        assert!(saved > 1.5, "case {i}: the int8 model saves only {saved:.2} bytes per parameter");
        assert!(bytes.windows(22).any(|w| w == b"softlabel.quantization"), "case {i}: no quantization metadata");
        let (agree, rows, diff) = compare_with_onnx(&st, &int8, labels, "input");
        eprintln!("case {i}: int8 top class = float on {agree}/{rows} rows, logits within {diff:.4} of their range");
        assert!(agree * 100 >= rows * 97, "case {i}: int8 agrees with float on {agree} of {rows} rows");
        assert!(diff < 0.1, "case {i}: int8 logits differ from float by {diff} of their range");
        // The float export is exact, through the same comparison.
        let (agree, rows, diff) = compare_with_onnx(&st, &fp32, labels, "input");
        assert!(agree == rows && diff < 1e-5, "case {i}: float export {agree}/{rows}, {diff}");
        if i == 1 {
            report_measures_int8(&st, labels, &tmp.path().join("report"));
        }
    }
    // Without stored inputs there is nothing to calibrate on by default: the user is told what to pass.
    let bare = tmp.path().join("bare");
    let (linear, small) = (fx("linear.onnx"), fx("small.parquet"));
    let args = ["precompute", "--teacher", s(&linear), "--data", s(&small), "-T", "2"];
    assert_ok(&softlabel(&[&args[..], &["--no-inputs", "--out", s(&bare)]].concat()));
    let st = tmp.path().join("bare-student");
    let o = softlabel(&["train", "--labels", s(&bare), "--inputs", s(&small), "--out", s(&st)]);
    assert_ok(&o);
    let out = tmp.path().join("bare.onnx");
    let o = softlabel(&["export", "--student", s(&st), "--out", s(&out), "--int8"]);
    assert_fails(&o, "stores none (--no-inputs); name data with --calibration");
    let o = softlabel(&[
        "export",
        "--student",
        s(&st),
        "--out",
        s(&out),
        "--int8",
        "--calibration",
        s(&fx("small.parquet")),
    ]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("small.parquet"), "{o:?}");
    // A bare file name is written in the current folder (its parent is the empty path).
    let bare_args = ["export", "--student", s(&st), "--out", "bare-name.onnx"];
    for extra in [&[][..], &["--int8", "--calibration", s(&small)][..]] {
        let o = Command::new(env!("CARGO_BIN_EXE_softlabel"))
            .current_dir(tmp.path())
            .args(bare_args.iter().chain(extra))
            .output()
            .unwrap();
        assert_ok(&o);
        assert!(tmp.path().join("bare-name.onnx").is_file());
    }
}
