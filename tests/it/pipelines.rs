//! Every shipped pipeline file loads and validates (paths resolved, every section checked), so a
//! renamed key or a changed default can never leave one of them broken.

use std::path::{Path, PathBuf};

use softlabel::config::{Pipeline, PipelineOverrides};

fn pipeline_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            pipeline_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_pipeline_loads() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    pipeline_files(&root.join("pipelines"), &mut files);
    assert!(files.len() >= 8, "expected the shipped pipelines, found {files:?}");
    for f in &files {
        let p = Pipeline::load(f, &PipelineOverrides { root: Some(root.clone()), ..Default::default() })
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for model in p.file.teacher.model.paths() {
            assert!(model.is_file(), "{}: [teacher] model {} does not exist", f.display(), model.display());
        }
        assert!(p.file.data.train.exists() && p.file.data.test.exists(), "{}: data paths", f.display());
        assert!(p.train.epochs > 0 && p.file.teacher.temperature.is_some(), "{}", f.display());
    }
}

/// A pipeline of NumPy data: `.npy` splits with their `[data] train_labels_npy` / `test_labels_npy`, and
/// `.npz` splits with `[data] npz_key` / `npz_labels`, run end to end; both give the same labels as the
/// command line does with the same flags.
#[test]
fn pipelines_read_numpy_splits_with_their_labels() {
    use crate::cli::{assert_ok, s, softlabel};
    use crate::common::fx;
    let tmp = tempfile::tempdir().unwrap();
    let teacher = fx("linear.onnx");
    let student = "[student]\nhidden = [8]\nepochs = 2\nthreads = 1\n";
    let teacher_section = format!("[teacher]\nmodel = '{}'\ntemperature = 2.0\n", teacher.display());
    let npy = format!(
        "[data]\ntrain = '{x}'\ntest = '{x}'\ntrain_labels_npy = '{y}'\ntest_labels_npy = '{y}'\n{teacher_section}{student}[output]\ndir = '{o}'\n",
        x = fx("small.npy").display(),
        y = fx("small_labels.npy").display(),
        o = tmp.path().join("npy").display()
    );
    let npz = format!(
        "[data]\ntrain = '{x}'\ntest = '{x}'\nnpz_key = 'x'\nnpz_labels = 'y'\n{teacher_section}{student}[output]\ndir = '{o}'\n",
        x = fx("small.npz").display(),
        o = tmp.path().join("npz").display()
    );
    for (name, text) in [("npy", &npy), ("npz", &npz)] {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let o = softlabel(&["run", "--root", "/", "--json", s(&file)]);
        assert_ok(&o);
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(r["test"]["labeled_rows"].as_u64(), Some(200), "{name}: {r}");
    }
    // The same labels as `precompute --labels-npy` makes.
    let by_hand = tmp.path().join("by-hand");
    let (x, y) = (fx("small.npy"), fx("small_labels.npy"));
    let args = ["precompute", "--teacher", s(&teacher), "--data", s(&x), "--labels-npy", s(&y), "-T", "2"];
    assert_ok(&softlabel(&[&args[..], &["--out", s(&by_hand)]].concat()));
    let labels = |d: &Path| softlabel::store::SoftLabels::open(d).unwrap().load().unwrap().labels;
    assert_eq!(labels(&tmp.path().join("npy/labels-train")), labels(&by_hand));
    assert_eq!(labels(&tmp.path().join("npz/labels-test")), labels(&by_hand));
    // A labels file outside the pipeline's root is refused like any other path.
    let dir = tmp.path().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fx("small.npy"), dir.join("x.npy")).unwrap();
    let text = format!(
        "[data]\ntrain = 'x.npy'\ntest = 'x.npy'\ntrain_labels_npy = '../../elsewhere/y.npy'\n{teacher_section}[output]\ndir = 'o'\n"
    )
    .replace(&format!("'{}'", teacher.display()), "'x.npy'");
    std::fs::write(dir.join("x.toml"), text).unwrap();
    let e = Pipeline::load(&dir.join("x.toml"), &PipelineOverrides::default()).unwrap_err().to_string();
    assert!(e.contains("[data] train_labels_npy = ") && e.contains("lies outside the pipeline's root"), "{e}");
}
