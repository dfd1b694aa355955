//! The bad-input corpus: every case must exit with code 1 and a message naming the file, column and (for
//! data errors) row concerned; never panic; and never leave an output file with a final name that is
//! incomplete (no `_manifest.json`, no `part-*.parquet` that is not a whole Parquet file).
//!
//! Fixtures come from tests/fixtures/make_models.py (`make test` generates them). Other bad-input tests
//! that need several steps (tampered datasets, resume and merge refusals, training settings) are in
//! tests/cli.rs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{copy_dir, fx, reseal};

fn f(name: &str) -> String {
    fx(name).to_str().unwrap().to_string()
}

fn repo(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name).to_str().unwrap().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Data,
    Model,
    Config,
    Environment,
    Dataset,
}

struct Case {
    name: &'static str,
    kind: Kind,
    /// Arguments; `{OUT}` is a fresh output folder, `{DS}` a good soft-label dataset copied for this case,
    /// `{ST}` a good student copied for this case, `{TMP}` the case's scratch folder.
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// A shell prefix (e.g. a ulimit) to run the command under `sh -c`.
    shell: Option<&'static str>,
    /// Changes made to the case's copies of `{DS}` / `{ST}` before running.
    tamper: Option<fn(&Path, &Path)>,
    expect: Vec<&'static str>,
}

fn case(name: &'static str, kind: Kind, args: &[&str], expect: &[&'static str]) -> Case {
    Case {
        name,
        kind,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![],
        shell: None,
        tamper: None,
        expect: expect.to_vec(),
    }
}

/// `precompute` of `data` through `teacher` into {OUT} at T = 2, plus `extra`.
fn pre(name: &'static str, kind: Kind, teacher: &str, data: &str, extra: &[&str], expect: &[&'static str]) -> Case {
    let mut args = vec!["precompute".to_string(), "--teacher".into(), teacher.into(), "--data".into(), data.into()];
    if !extra.contains(&"--out") {
        args.extend(["--out".to_string(), "{OUT}".to_string()]);
    }
    if !extra.iter().any(|a| a.starts_with("--temperature")) {
        args.extend(["--temperature".to_string(), "2".to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Case { name, kind, args, env: vec![], shell: None, tamper: None, expect: expect.to_vec() }
}

/// Edits `_manifest.json` as JSON, as a person with an editor would (the checksum is left as it was).
fn edit_json(ds: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let p = ds.join("_manifest.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    change(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn corpus() -> Vec<Case> {
    use Kind::*;
    let lin = f("linear.onnx");
    let small = f("small.parquet");
    let bag = f("masked_bag.onnx");
    let pipeline = |body: &str| -> Vec<String> {
        vec!["run".into(), format!("{{TMP}}/p.toml::{body}"), "--root".into(), "/".into()]
    };
    let mut cases = vec![
        // --- data
        pre("missing data file", Data, &lin, "/nonexistent/data.parquet", &[], &["/nonexistent/data.parquet", "No such file"]),
        pre("data folder without Parquet files", Data, &lin, &repo("pipelines"), &[], &["pipelines", "no *.parquet files"]),
        pre("missing input column", Data, &lin, &small, &["--input-column", "pixels"], &["small.parquet", "no column 'pixels'", "columns: id, input, label"]),
        pre("missing explicit label column", Data, &lin, &small, &["--label-column", "target"], &["small.parquet", "no column 'target'"]),
        pre("missing scalar input column", Data, &lin, &f("scalars.parquet"), &["--input-column", "f0,f1,f9"], &["scalars.parquet", "no column 'f9'"]),
        pre("wrong input width", Data, &lin, &f("wide.parquet"), &[], &["linear.onnx", "column 'input' has 5 values per row", "[batch, 4]", "(4 values per row)"]),
        pre("string input column", Data, &lin, &f("string_input.parquet"), &[], &["string_input.parquet", "input column 'input' has type Utf8"]),
        pre("float label column", Data, &lin, &f("float_label.parquet"), &[], &["float_label.parquet", "label column 'label' has type Float64, expected an integer type"]),
        pre("label outside the teacher's classes", Data, &lin, &f("label_out_of_range.parquet"), &[], &["label_out_of_range.parquet", "column 'label', row 8", "label 5 is outside [0, 3)"]),
        pre("ragged list", Data, &lin, &f("ragged.parquet"), &[], &["ragged.parquet", "column 'input', row 7", "3 values"]),
        pre("NaN input", Data, &lin, &f("nan_input.parquet"), &[], &["nan_input.parquet", "column 'input', row 17", "NaN", "--skip-nonfinite"]),
        pre("infinite input", Data, &lin, &f("inf_input.parquet"), &[], &["inf_input.parquet", "column 'input', row 11", "inf"]),
        pre("null input row", Data, &lin, &f("null_input.parquet"), &[], &["null_input.parquet", "column 'input', row 5", "null"]),
        pre("duplicate ids", Data, &lin, &f("dup_ids.parquet"), &[], &["dup_ids.parquet", "column 'id', row 9", "duplicate id 1003"]),
        pre("negative id", Data, &lin, &f("neg_id.parquet"), &[], &["neg_id.parquet", "column 'id', row 4", "id -5 is not a u64"]),
        pre("null id", Data, &lin, &f("null_id.parquet"), &[], &["null_id.parquet", "column 'id', row 6", "id is null"]),
        pre("zero rows", Data, &lin, &f("zero_rows.parquet"), &[], &["zero_rows.parquet", "zero rows"]),
        pre("truncated Parquet", Data, &lin, &f("truncated.parquet"), &[], &["truncated.parquet", "not a readable Parquet file"]),
        pre("corrupt footer", Data, &lin, &f("corrupt_footer.parquet"), &[], &["corrupt_footer.parquet", "not a readable Parquet file"]),
        pre("empty file", Data, &lin, &f("empty.parquet"), &[], &["empty.parquet", "not a readable Parquet file"]),
        // NumPy and CSV (more in formats.rs)
        pre("npy of objects", Data, &lin, &f("objects.npy"), &[], &["objects.npy", "dtype '|O' is not numeric"]),
        pre("npy in Fortran order", Data, &lin, &f("small_fortran.npy"), &[], &["small_fortran.npy", "Fortran (column-major) order"]),
        pre("npy labels of the wrong length", Data, &lin, &f("small.npy"), &["--labels-npy", &f("small_labels_short.npy")], &["small_labels_short.npy", "199 labels for the 200 rows"]),
        pre("npz array of the wrong shape", Data, &lin, &f("small.npz"), &["--npz-key", "y"], &["linear.onnx", "1 values per row", "(4 values per row)"]),
        pre("npz without the array named", Data, &lin, &f("small.npz"), &[], &["small.npz", "holds arrays x, y; name the input with --npz-key NAME"]),
        pre("CSV with a text feature", Data, &lin, &f("small.csv"), &["--input-column", "a,b,c,note"], &["small.csv", "line 2, column 'note'", "is not a number"]),
        pre("a JSON file given as data", Data, &lin, &f("linear.json"), &[], &["linear.json", "a .json text file is not a format softlabel reads as data"]),
        // --- models
        pre("non-ONNX teacher", Model, &f("not_onnx.onnx"), &small, &[], &["not_onnx.onnx", "cannot load as an ONNX model"]),
        case("inspect-teacher of a file that is not ONNX", Model, &["inspect-teacher", &f("not_onnx.onnx")], &["not_onnx.onnx", "cannot read the ONNX protobuf"]),
        pre("missing teacher", Model, "/nonexistent/t.onnx", &small, &[], &["/nonexistent/t.onnx", "No such file"]),
        pre("teacher with two inputs", Model, &f("two_inputs.onnx"), &small, &[], &["two_inputs.onnx", "2 inputs (a, b)"]),
        // --- teachers of several inputs (--input NAME=COLUMN)
        pre("an input name the model does not have", Model, &bag, &f("masked_bag.parquet"), &["--input", "input_ids=ids", "--input", "attn=mask"], &["masked_bag.onnx", "no input 'attn'", "input_ids, attention_mask"]),
        pre("a model input left unfed", Model, &bag, &f("masked_bag.parquet"), &["--input", "input_ids=ids"], &["masked_bag.onnx", "attention_mask are not fed", "--input NAME=COLUMN"]),
        pre("one model input chosen of two", Model, &bag, &f("masked_bag.parquet"), &["--input-name", "input_ids", "--input-column", "ids"], &["masked_bag.onnx", "attention_mask are not fed"]),
        pre("an input column the data does not have", Data, &bag, &f("masked_bag.parquet"), &["--input", "input_ids=ids", "--input", "attention_mask=nope"], &["masked_bag.parquet", "no column 'nope'", "--input NAME=COLUMN"]),
        pre("a mask wider than the model's input", Model, &bag, &f("masked_bag_wide_mask.parquet"), &["--input", "input_ids=ids", "--input", "attention_mask=mask"], &["masked_bag.onnx", "column 'mask' has 7 values per row", "'attention_mask' has shape [batch, 6]"]),
        pre("a null mask row", Data, &bag, &f("masked_bag_null_mask.parquet"), &["--input", "input_ids=ids", "--input", "attention_mask=mask"], &["masked_bag_null_mask.parquet", "column 'mask', row 17", "null"]),
        pre("one column fed to two inputs", Config, &bag, &f("masked_bag.parquet"), &["--input", "input_ids=ids", "--input", "attention_mask=ids"], &["--input feeds column 'ids' to two teacher inputs"]),
        pre("a data input that no --input maps", Config, &bag, &f("masked_bag.parquet"), &["--input", "input_ids=ids", "--input", "attention_mask=mask", "--input-column", "label"], &["the data's input column 'label' is none of the columns --input feeds (ids, mask)", "--input-column"]),
        // --- sequence teachers (more in tests/python/test_sequences.py)
        pre("tags of fewer positions than the tokens", Data, &f("seq_tagger.onnx"), &f("seq_tagger_short_tags.parquet"), &["--input-column", "tokens", "--label-column", "tags", "--pad-id", "0"], &["seq_tagger_short_tags.parquet", "column 'tags', row 0", "11 labels a row, the input has 12 positions"]),
        pre("a tag outside the tagger's classes", Data, &f("seq_tagger.onnx"), &f("seq_tagger_bad_tag.parquet"), &["--input-column", "tokens", "--label-column", "tags", "--pad-id", "0"], &["seq_tagger_bad_tag.parquet", "column 'tags', row 5 (id 5), position 2", "label 9 is outside [0, 5)"]),
        pre("sequence flags for a classifier", Model, &lin, &small, &["--targets", "next"], &["linear.onnx", "are for sequence teachers"]),
        pre("a language model's mask input that does not exist", Model, &f("seq_lm.onnx"), &f("seq_lm.parquet"), &["--input-column", "tokens", "--pad-id", "0", "--mask-input", "mask"], &["seq_lm.onnx", "--mask-input 'mask'", "input_ids, attention_mask"]),
        // --- image folders and image lists (more in tests/python/test_images.py, test_image_prep.py)
        pre("a corrupt image", Data, &f("linear_image.onnx"), &f("images/corrupt"), &[], &["corrupt/a/1.png", "cannot decode the image"]),
        pre("an image of another size without --resize", Data, &f("linear_image.onnx"), &f("images/sizes"), &[], &["sizes/a/1.png", "is 3x2 (height x width), the rows 2x2: give --resize S"]),
        pre("an image list path leaving its folder", Data, &f("linear_image.onnx"), &f("images/list_escape.csv"), &[], &["list_escape.csv", "line 3, column 'path'", "not a plain relative path"]),
        pre("an image listed twice", Data, &f("linear_image.onnx"), &f("images/list_twice.csv"), &[], &["list_twice.csv", "line 3, column 'path'", "listed twice"]),
        pre("an image list naming a missing file", Data, &f("linear_image.onnx"), &f("images/list_missing.csv"), &[], &["list_missing.csv", "line 3, column 'path'", "good/a/9.png"]),
        pre("several inputs from a .npy file", Config, &bag, &f("small.npy"), &["--input", "input_ids=ids", "--input", "attention_mask=mask"], &["small.npy", "a .npy file holds one input", "Parquet"]),
        pre("teacher input the data cannot be reshaped to", Model, &f("rank3_input.onnx"), &small, &[], &["rank3_input.onnx", "has 4 values per row", "[batch, 3, 3] (9 values per row)"]),
        pre("teacher input with two dynamic dimensions", Model, &f("two_dynamic.onnx"), &small, &[], &["two_dynamic.onnx", "[batch, ?, ?]"]),
        pre("teacher with a string input", Model, &f("string_model.onnx"), &small, &[], &["string_model.onnx", "element type String"]),
        pre("teacher output of rank 3", Model, &f("rank3_output.onnx"), &small, &[], &["rank3_output.onnx", "a classifier's output is [batch, classes]", "small.parquet"]),
        pre("teacher producing NaN", Model, &f("nan_output.onnx"), &small, &[], &["nan_output.onnx", "non-finite logit", "small.parquet, row 0"]),
        pre("class names of wrong count", Model, &lin, &small, &["--class-names", "a,b"], &["--class-names lists 2 names", "3 classes"]),
        // --- config
        pre("T = 0", Config, &lin, &small, &["--temperature", "0"], &["temperature must be finite and > 0"]),
        pre("T < 0", Config, &lin, &small, &["--temperature=-1"], &["temperature must be finite and > 0"]),
        pre("T = NaN", Config, &lin, &small, &["--temperature", "NaN"], &["temperature must be finite and > 0"]),
        pre("T = inf", Config, &lin, &small, &["--temperature", "inf"], &["temperature must be finite and > 0"]),
        pre("batch size 0", Config, &lin, &small, &["--batch-size", "0"], &["--batch-size must be > 0"]),
        pre("shard out of range", Config, &lin, &small, &["--shard", "3/3"], &["--shard '3/3' is not I/N"]),
        pre("misspelt flag", Config, &lin, &small, &["--temprature", "2"], &["unexpected argument '--temprature'"]),
        case("alpha above 1", Config, &["train", "--labels", "{DS}", "--out", "{OUT}", "--alpha", "1.5"], &["--alpha must be in [0, 1]"]),
        case("alpha below 0", Config, &["train", "--labels", "{DS}", "--out", "{OUT}", "--alpha=-0.5"], &["--alpha must be in [0, 1]"]),
        case("train T = 0", Config, &["train", "--labels", "{DS}", "--out", "{OUT}", "--temperature", "0"], &["temperature must be finite and > 0"]),
        case("hidden size 0", Config, &["train", "--labels", "{DS}", "--out", "{OUT}", "--hidden", "16,0"], &["--hidden sizes must be > 0"]),
        Case { args: pipeline("[data]\ntrain = 'a.parquet'\ntest = 'b.parquet'\n[teacher]\nmodel = 't.onnx'\ntemperature = 2.0\ntemprature = 3.0\n[student]\n[output]\ndir = 'o'\n"), ..case("unknown pipeline key", Config, &[], &["p.toml", "unknown field `temprature`"]) },
        Case { args: pipeline("[data]\ntrain = 'a.parquet'\ntest = 'b.parquet'\n[teacher]\nmodel = 't.onnx'\ntemperature = nan\n[student]\n[output]\ndir = 'o'\n"), ..case("pipeline T = nan", Config, &[], &["p.toml", "[teacher]", "temperature must be finite and > 0"]) },
        Case { args: pipeline("[data]\ntrain = 'a.parquet'\ntest = 'b.parquet'\n[teacher]\nmodel = 't.onnx'\ntemperature = 2.0\n[student]\nalpha = 2.0\n[output]\ndir = 'o'\n"), ..case("pipeline alpha = 2", Config, &[], &["p.toml", "[student] alpha must be in [0, 1]"]) },
        Case { args: pipeline("[data]\ntrain = 'a.parquet'\ntest = 'b.parquet'\n[student]\n[output]\ndir = 'o'\n"), ..case("pipeline missing [teacher]", Config, &[], &["p.toml", "missing field `teacher`"]) },
        Case { args: pipeline("[data\ntrain = 1\n"), ..case("pipeline that is not TOML", Config, &[], &["p.toml", "TOML parse error"]) },
        case("missing pipeline file", Config, &["run", "/nonexistent/pipeline.toml"], &["/nonexistent/pipeline.toml", "No such file"]),
        // --- environment
        Case { env: vec![("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so".into())], ..pre("missing ONNX Runtime library", Environment, &lin, &small, &[], &["ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so: no such file", "make setup"]) },
        Case { env: vec![("ORT_DYLIB_PATH", f("linear.json"))], ..pre("ONNX Runtime library that is not a library", Environment, &lin, &small, &[], &["linear.json", "cannot load ONNX Runtime"]) },
        pre("--ort-lib that does not exist", Environment, &lin, &small, &["--ort-lib", "/nonexistent/lib.so"], &["--ort-lib /nonexistent/lib.so: no such file"]),
        pre("output folder under a file (not writable)", Environment, &lin, &small, &["--out", "{TMP}/file/out"], &["{TMP}/file/out", "Not a directory"]),
        Case { shell: Some("ulimit -f 64;"), ..pre("disk full (file-size limit of 64 KiB)", Environment, &repo("data/teachers/mnist_cnn.onnx"), &repo("data/mnist/test.parquet"), &["--input-column", "image"], &["{OUT}/.part-00000.parquet.tmp", "File too large"]) },
        pre("output folder holding other files", Environment, &lin, &small, &["--out", "{TMP}"], &["{TMP}", "output folder is not empty"]),
        // --- soft-label datasets and students
        case("labels folder that is not a dataset", Dataset, &["train", "--labels", &f("small_dir"), "--out", "{OUT}"], &["_manifest.json: missing"]),
        Case { tamper: Some(|ds, _| edit_json(ds, |v| v["rows"] = 201.into())), ..case("manifest rows edited by hand", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}"], &["_manifest.json", "parts hold 200 rows, manifest says 201"]) },
        Case { tamper: Some(|ds, _| edit_json(ds, |v| v["temperature"] = (-1.0).into())), ..case("manifest temperature edited to -1", Dataset, &["inspect", "{DS}"], &["_manifest.json", "temperature -1 is not finite and > 0"]) },
        Case { tamper: Some(|ds, _| edit_json(ds, |v| v["source"]["files"][0]["rows"] = 999.into())), ..case("manifest source description edited by hand", Dataset, &["inspect", "{DS}"], &["_manifest.json", "edited by hand"]) },
        Case { tamper: Some(|ds, _| edit_json(ds, |v| v["rowz"] = 1.into())), ..case("manifest with an unknown field", Dataset, &["inspect", "{DS}"], &["_manifest.json", "unknown field `rowz`"]) },
        Case { tamper: Some(|ds, _| edit_json(ds, |v| v["schema_version"] = "3.0".into())), ..case("manifest of a newer major schema version", Dataset, &["inspect", "{DS}"], &["_manifest.json", "schema version 3.0 is newer than this softlabel reads"]) },
        Case { tamper: Some(|ds, _| std::fs::write(ds.join("_manifest.json"), "{ not json").unwrap()), ..case("manifest that is not JSON", Dataset, &["inspect", "{DS}"], &["_manifest.json", "not valid JSON"]) },
        Case {
            // The manifest (consistently rewritten) claims another teacher; the parts' own metadata name the real one.
            tamper: Some(|ds, _| reseal(ds, |m| m.teacher.sha256 = "0".repeat(64))),
            ..case("labels made by another teacher than the manifest says", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}"], &["part-00000.parquet: part was made by teacher sha256", "_manifest.json says 0000"])
        },
        Case { tamper: Some(|ds, _| std::fs::remove_file(ds.join("part-00001.parquet")).unwrap()), ..case("part file missing", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}"], &["part-00001.parquet: part listed in _manifest.json is missing"]) },
        Case {
            tamper: Some(|ds, _| {
                let p = ds.join("part-00000.parquet");
                let mut b = std::fs::read(&p).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
                std::fs::write(&p, b).unwrap();
            }),
            ..case("part file with one flipped byte", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}"], &["part-00000.parquet: part was changed or replaced"])
        },
        case("--val with other classes than the labels", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}", "--val", &f("label_out_of_range.parquet")], &["label_out_of_range.parquet", "column 'label', row 8", "--val has other classes"]),
        case("--val of another width", Dataset, &["train", "--labels", "{DS}", "--out", "{OUT}", "--val", &f("wide.parquet")], &["wide.parquet", "5 values per row"]),
        case("eval data of another width", Dataset, &["eval", "--student", "{ST}", "--data", &f("wide.parquet")], &["wide.parquet", "5 values per row, the student expects 4"]),
        case("missing student", Dataset, &["eval", "--student", "/nonexistent/student", "--data", &small], &["/nonexistent/student/student.json"]),
        Case {
            tamper: Some(|_, st| {
                let p = st.join("student.safetensors");
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len() - 1;
                b[n] ^= 1;
                std::fs::write(&p, b).unwrap();
            }),
            ..case("student weights changed after training", Dataset, &["eval", "--student", "{ST}", "--data", &small], &["student.safetensors", "the weights were changed"])
        },
    ];
    // The pipeline cases write their TOML body (after "::") to the path before "::".
    for c in &mut cases {
        if c.args.len() == 4 && c.args[0] == "run" {
            if let Some((_, body)) = c.args[1].split_once("::") {
                c.env.push(("__PIPELINE_BODY", body.to_string()));
                c.args[1] = "{TMP}/p.toml".into();
            }
        }
    }
    cases
}

fn softlabel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_softlabel"))
}

/// A complete dataset (parts of 100 rows) and a trained student to copy and tamper with.
fn good_dataset_and_student(root: &Path) -> (PathBuf, PathBuf) {
    let ds = root.join("good-labels");
    let st = root.join("good-student");
    let o = softlabel()
        .args([
            "precompute",
            "--quiet",
            "--teacher",
            &f("linear.onnx"),
            "--data",
            &f("small.parquet"),
            "--temperature",
            "2",
            "--rows-per-part",
            "100",
            "--out",
        ])
        .arg(&ds)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = softlabel()
        .args(["train", "--quiet", "--hidden", "8", "--epochs", "1", "--labels"])
        .arg(&ds)
        .arg("--out")
        .arg(&st)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (ds, st)
}

fn is_complete_parquet(p: &Path) -> bool {
    let b = std::fs::read(p).unwrap();
    b.len() >= 12 && &b[..4] == b"PAR1" && &b[b.len() - 4..] == b"PAR1"
}

#[test]
fn every_bad_input_exits_1_with_a_message_naming_the_place_and_leaves_nothing_incomplete() {
    let root = tempfile::tempdir().unwrap();
    let (good_ds, good_st) = good_dataset_and_student(root.path());
    let cases = corpus();
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let tmp = root.path().join(format!("case{i:02}"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("file"), "a regular file").unwrap();
        let out = tmp.join("out");
        let ds = tmp.join("labels");
        let st = tmp.join("student");
        copy_dir(&good_ds, &ds);
        copy_dir(&good_st, &st);
        if let Some(t) = c.tamper {
            t(&ds, &st);
        }
        let subst = |a: &str| {
            a.replace("{OUT}", out.to_str().unwrap())
                .replace("{DS}", ds.to_str().unwrap())
                .replace("{ST}", st.to_str().unwrap())
                .replace("{TMP}", tmp.to_str().unwrap())
        };
        let args: Vec<String> = c.args.iter().map(|a| subst(a)).collect();
        let mut cmd = match c.shell {
            Some(prefix) => {
                let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
                let mut sh = Command::new("sh");
                sh.arg("-c").arg(format!(
                    "{prefix} exec '{}' {} --quiet",
                    env!("CARGO_BIN_EXE_softlabel"),
                    quoted.join(" ")
                ));
                sh
            }
            None => {
                let mut cmd = softlabel();
                cmd.args(&args).arg("--quiet");
                cmd
            }
        };
        for (k, v) in &c.env {
            if *k == "__PIPELINE_BODY" {
                std::fs::write(tmp.join("p.toml"), v).unwrap();
            } else {
                cmd.env(k, v);
            }
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let mut problems = Vec::new();
        if o.status.code() != Some(1) {
            problems.push(format!("exit {:?}", o.status.code()));
        }
        for e in &c.expect {
            let e = subst(e);
            if !err.contains(&e) {
                problems.push(format!("stderr lacks {e:?}"));
            }
        }
        if err.contains("panicked") {
            problems.push("panicked".into());
        }
        // No output that looks complete: no manifest, every final-named part whole.
        for dir in [&out, &tmp] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries {
                    let p = e.unwrap().path();
                    let name = p.file_name().unwrap().to_string_lossy().to_string();
                    if name == "_manifest.json" || (name.starts_with("part-") && !is_complete_parquet(&p)) {
                        problems.push(format!("left {}", p.display()));
                    }
                    if name.ends_with(".tmp") {
                        problems.push(format!("left temporary {}", p.display()));
                    }
                }
            }
        }
        println!(
            "[{:?}] {}: {}",
            c.kind,
            c.name,
            if problems.is_empty() { "ok".to_string() } else { problems.join("; ") }
        );
        if !problems.is_empty() {
            failures.push(format!("{} ({:?}): {}\n    stderr: {}", c.name, c.kind, problems.join("; "), err.trim()));
        }
    }
    assert!(cases.len() >= 40, "the corpus must hold at least 40 cases, has {}", cases.len());
    for kind in [Kind::Data, Kind::Model, Kind::Config, Kind::Environment, Kind::Dataset] {
        assert!(cases.iter().filter(|c| c.kind == kind).count() >= 3, "too few {kind:?} cases");
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn skip_nonfinite_skips_and_counts_the_bad_rows() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("labels");
    let o = softlabel()
        .args([
            "precompute",
            "--quiet",
            "--teacher",
            &f("linear.onnx"),
            "--data",
            &f("nan_input.parquet"),
            "--temperature",
            "2",
            "--skip-nonfinite",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(m["rows"], 199);
    assert_eq!(m["skipped_nonfinite_rows"], 1);
    let ds = softlabel::store::SoftLabels::open(&out).unwrap().load().unwrap();
    // Row 17 (id 1017) is the one with the NaN.
    assert!(!ds.ids.contains(&1017) && ds.ids.contains(&1016) && ds.ids.contains(&1018));
}
