//! The daily path (issue 14): many students on one teacher pass without traps. Each test names the
//! trap it guards; each failed on main before the fix.

use std::path::Path;
use std::process::Command;

use crate::cli::{assert_fails, assert_ok, mnist, mnist_test_labels, s, softlabel};
use crate::common::{fx, kill_when};

fn json(o: &std::process::Output) -> serde_json::Value {
    assert_ok(o);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A pipeline over the fixtures: `teacher` and `student` are extra lines of those sections.
fn pipeline(dir: &Path, teacher: &str, student: &str) -> String {
    let f = |n: &str| fx(n).to_str().unwrap().to_string();
    format!(
        "[data]\ntrain = \"{}\"\ntest = \"{}\"\n\n[teacher]\nmodel = \"{}\"\n{teacher}\n\n[student]\nhidden = [16]\n\
         epochs = 4\nbatch_size = 32\nlr = 0.01\n{student}\n\n[output]\ndir = \"{}\"\n",
        f("small.parquet"),
        f("small_dir"),
        f("linear.onnx"),
        dir.display()
    )
}

fn run(path: &Path, extra: &[&str]) -> std::process::Output {
    softlabel(&[&["run", "--root", "/", s(path), "--json"], extra].concat())
}

/// Trap 2: a new temperature re-softens stored dense logits (no teacher pass, labels untouched); sparse
/// labels at another T, or labels of another teacher, are refused unless `run --overwrite`.
#[test]
fn a_new_temperature_re_softens_stored_logits_and_finished_labels_are_never_replaced_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, path) = (tmp.path().join("run"), tmp.path().join("p.toml"));
    std::fs::write(&path, pipeline(&out, "temperature = 2.0", "")).unwrap();
    let first = json(&run(&path, &[]));
    assert_eq!(first["train_labels_reused"], false);
    let manifest = read(&out.join("labels-train/_manifest.json"));
    std::fs::write(&path, pipeline(&out, "temperature = 5.0", "")).unwrap();
    // The student of T = 2 is not replaced silently either.
    assert_fails(&run(&path, &[]), "holds a finished student made otherwise: temperature = unset there, 5 here");
    // --overwrite replaces the student; the labels still need no teacher pass.
    let o = run(&path, &["--overwrite"]);
    let r = json(&o);
    assert_eq!((r["train_labels_reused"].clone(), r["resoftened_from"].clone()), (true.into(), 2.0.into()), "{r}");
    assert_eq!(r["temperature"], 5.0);
    assert_eq!(read(&out.join("labels-train/_manifest.json")), manifest, "the finished labels were rewritten");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("cannot resume"), "a finished run is not an interrupted one: {err}");
    // The student distilled at the new temperature (it is recorded with it).
    let info: serde_json::Value = serde_json::from_slice(&read(&out.join("student/student.json"))).unwrap();
    assert_eq!(info["temperature"], 5.0);

    // Top-k labels hold only at their temperature: refused, named, then replaced with --overwrite.
    let sparse = tmp.path().join("sparse");
    std::fs::write(&path, pipeline(&sparse, "temperature = 2.0\ntop_k = 2", "")).unwrap();
    json(&run(&path, &[]));
    std::fs::write(&path, pipeline(&sparse, "temperature = 3.0\ntop_k = 2", "")).unwrap();
    let o = run(&path, &[]);
    assert_fails(&o, "holds top-k 2 labels made at T = 2");
    assert_fails(&o, "pass `run --overwrite` to replace them");
    let r = json(&run(&path, &["--overwrite"]));
    assert_eq!(r["train_labels_reused"], false);

    // Labels of another teacher in the same folder: refused, both sides named.
    let other = pipeline(&out, "temperature = 2.0", "")
        .replace(fx("linear.onnx").to_str().unwrap(), fx("linear_b.onnx").to_str().unwrap());
    std::fs::write(&path, other).unwrap();
    assert_fails(&run(&path, &[]), "holds finished soft labels made otherwise: another teacher");
}

/// Trap 3: an identical rerun reuses the finished student (same weights file, no training); a student
/// made with other settings is refused by name, and replaced only with --overwrite.
#[test]
fn finished_students_are_reused_and_never_overwritten_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, path) = (tmp.path().join("run"), tmp.path().join("p.toml"));
    std::fs::write(&path, pipeline(&out, "temperature = 2.0", "")).unwrap();
    assert_eq!(json(&run(&path, &[]))["student_reused"], false);
    let weights = read(&out.join("student/student.safetensors"));
    let r = json(&run(&path, &[]));
    assert_eq!(r["student_reused"], true, "{r}");
    assert_eq!(read(&out.join("student/student.safetensors")), weights);
    // Another pipeline into the same folder with other settings.
    std::fs::write(&path, pipeline(&out, "temperature = 2.0", "").replace("epochs = 4", "epochs = 6")).unwrap();
    let o = run(&path, &[]);
    assert_fails(&o, "holds a finished student made otherwise: epochs = 4 there, 6 here");
    assert_eq!(read(&out.join("student/student.safetensors")), weights, "refused, yet overwritten");
    assert_eq!(json(&run(&path, &["--overwrite"]))["student_reused"], false);
    // `softlabel train` follows the same rule.
    let labels = out.join("labels-train");
    let st = tmp.path().join("st");
    let train = |extra: &[&str]| {
        softlabel(
            &[&["train", "--labels", s(&labels), "--out", s(&st), "--hidden", "8", "--epochs", "2"], extra].concat(),
        )
    };
    assert_ok(&train(&[]));
    let o = train(&[]);
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already holds this student"));
    assert_fails(&train(&["--lr", "0.5"]), "optimizer.lr = 0.001 there, 0.5 here");
    assert_ok(&train(&["--lr", "0.5", "--overwrite"]));
}

/// Trap 1 (train --val): validating on the data the labels were made from is refused; --val-fraction
/// holds rows out by id instead, and --keep best saves the best epoch on them.
#[test]
fn validation_is_held_out_and_the_best_epoch_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let st = tmp.path().join("st");
    let base = ["train", "--labels", s(&labels), "--hidden", "32", "--batch-size", "64", "--threads", "2"];
    let data = mnist("mnist/test.parquet");
    let o = softlabel(&[&base[..], &["--out", s(&st), "--val", s(&data), "--input-column", "image"]].concat());
    assert_fails(&o, "--val is the data");
    let o = softlabel(&[&base[..], &["--out", s(&st), "--keep", "best"]].concat());
    assert_fails(&o, "--keep best and --early-stop choose epochs by a validation metric");

    let args = ["--epochs", "12", "--lr", "0.02", "--val-fraction", "0.2", "--keep", "best", "--early-stop", "3"];
    let info = json(&softlabel(&[&base[..], &["--out", s(&st), "--json"], &args[..]].concat()));
    let log: Vec<serde_json::Value> = std::fs::read_to_string(st.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Held-out rows: about 20% of 10,000 ids (binomial sd 40), never trained on.
    let rows = info["train_rows"].as_u64().unwrap();
    assert!((7800..=8200).contains(&rows), "{rows} training rows");
    let acc: Vec<f64> = log.iter().map(|l| l["val_accuracy"].as_f64().unwrap()).collect();
    assert!(log.iter().all(|l| l["val_agreement"].as_f64().is_some() && l["val_kl"].as_f64().unwrap() >= 0.0));
    let best = acc.iter().enumerate().fold(0, |b, (i, a)| if *a > acc[b] { i } else { b }) + 1;
    let saved = info["saved_epoch"].as_u64().map_or(log.len(), |e| e as usize);
    assert_eq!(saved, best, "kept epoch {saved}, best on validation {best}: {acc:?}");
    assert_eq!(info["final_epoch"]["val_accuracy"], log.last().unwrap()["val_accuracy"]);
    if info["stopped_early"] == true {
        assert_eq!(log.len(), best + 3, "stops 3 epochs after the best");
    } else {
        assert_eq!(log.len(), 12);
    }
    // The kept weights score the logged accuracy of their epoch on the held-out rows... and the split is
    // the same for a student with another seed (it depends on ids and --val-seed only).
    let other = tmp.path().join("other");
    let o = json(&softlabel(
        &[&base[..], &["--out", s(&other), "--json", "--seed", "9", "--epochs", "1", "--val-fraction", "0.2"]].concat(),
    ));
    assert_eq!(o["train_rows"], info["train_rows"]);
}

/// Trap 7: inputs are stored at least as compactly as the source stores them (MNIST's uint8 pixels).
#[test]
fn stored_inputs_are_no_larger_than_the_source() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let column_bytes = |file: &Path, name: &str| -> i64 {
        let r = SerializedFileReader::new(std::fs::File::open(file).unwrap()).unwrap();
        let m = r.metadata();
        (0..m.num_row_groups())
            .flat_map(|g| m.row_group(g).columns().to_vec())
            .filter(|c| c.column_path().parts()[0] == name)
            .map(|c| c.compressed_size())
            .sum()
    };
    let source = column_bytes(&mnist("mnist/test.parquet"), "image");
    let stored = column_bytes(&labels.join("part-00000.parquet"), "input");
    assert!(source > 0 && stored > 0);
    assert!(stored <= source, "input column {stored} bytes, the source's {source}");
}

/// Trap 5: plots show only what was drawn, class names where the user gave them, and the rows per
/// reliability bin.
#[test]
fn plots_name_what_they_show() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    let names = "zero,one,two,three,four,five,six,seven,eight,nine";
    let (teacher, data) = (mnist("teachers/mnist_cnn.onnx"), mnist("mnist/test.parquet"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&data)];
    assert_ok(&softlabel(&[&args[..], &["-T", "4", "--out", s(&labels), "--class-names", names]].concat()));
    let st = tmp.path().join("st");
    assert_ok(&softlabel(&["train", "--labels", s(&labels), "--out", s(&st), "--hidden", "16", "--epochs", "2"]));
    let rep = tmp.path().join("rep");
    let o = softlabel(&[
        "report",
        "--teacher",
        s(&teacher),
        "--student",
        s(&st),
        "--data",
        s(&labels),
        "--labels",
        s(&labels),
        "--out",
        s(&rep),
        "--latency-runs",
        "5",
    ]);
    assert_ok(&o);
    let text = |n: &str| String::from_utf8(read(&rep.join(n))).unwrap();
    let curves = text("training_curves.svg");
    assert!(curves.contains("train loss") && !curves.contains("val accuracy"), "a legend entry without its curve");
    assert!(text("temperatures.svg").contains(">seven<"), "class names in the softmax plot");
    assert!(text("reliability.svg").contains("rows (log)"), "rows per bin");
    let md = text("report.md");
    assert!(md.contains("| 7 (seven) |"), "{md}");
    let e = softlabel(&["eval", "--student", s(&st), "--data", s(&labels)]);
    assert!(String::from_utf8_lossy(&e.stdout).contains("seven:"), "errors by class with names");
}

/// The experiment loop: a sweep of 8 students killed with SIGKILL and run again gives the same
/// students as an uninterrupted sweep, reuses what had finished, and ranks them on validation.
#[test]
fn a_killed_sweep_resumes_to_the_same_students() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels");
    mnist_test_labels(&labels);
    let test = labels.clone();
    let args = |out: &Path| -> Vec<String> {
        [
            "sweep",
            "--labels",
            s(&labels),
            "--out",
            s(out),
            "--set",
            "hidden=[16],[32],[64],[128]",
            "--set",
            "alpha=0.5,0.9",
            "--set",
            "epochs=4",
            "--parallel",
            "2",
            "--threads",
            "2",
            "--test",
            s(&test),
            "--quiet",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let whole = tmp.path().join("whole");
    assert_ok(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&whole)).output().unwrap());
    let killed = tmp.path().join("killed");
    // Kill once the first checkpoint or student exists.
    kill_when(&args(&killed), "checkpoint or student", || {
        std::fs::read_dir(&killed)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("checkpoint.json").exists() || e.path().join("student.json").exists())
    });
    assert!(!killed.join("sweep.json").exists(), "killed before it finished");
    let o = Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&killed)).arg("--json").output().unwrap();
    let r = json(&o);
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    for run in runs {
        let name = run["name"].as_str().unwrap();
        assert_eq!(
            read(&killed.join(name).join("student.safetensors")),
            read(&whole.join(name).join("student.safetensors")),
            "{name}"
        );
    }
    // Ranked by validation accuracy, best first; only the chosen one is tested.
    let scores: Vec<f64> = runs.iter().map(|r| r["val_accuracy"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(r["chosen"], runs[0]["name"]);
    assert!(r["test"]["accuracy"].as_f64().unwrap() > 0.8);
    for f in ["sweep.md", "sweep.json", "sweep.svg"] {
        assert!(killed.join(f).is_file(), "{f}");
    }
    // A third run trains nothing.
    let r = json(&Command::new(env!("CARGO_BIN_EXE_softlabel")).args(args(&killed)).arg("--json").output().unwrap());
    assert!(r["runs"].as_array().unwrap().iter().all(|run| run["reused"] == true));
}
