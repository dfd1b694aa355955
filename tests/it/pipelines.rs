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
