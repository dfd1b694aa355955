//! The journal of an unfinished run and continuing from it: committed parts are checked and kept, the
//! rest of the folder is cleared, and the writer carries on after the last committed source row.

use std::path::Path;

use super::folder::{entries, remove_dataset_files};
use super::{Resumed, SoftLabelWriter, WriterOptions};
use crate::error::{Error, Result};
use crate::store::{Manifest, MANIFEST, PROGRESS};

/// The journal of an unfinished run (`_progress.json`), rewritten atomically after each part closes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Progress {
    pub(super) format: String,
    /// Source rows (in reading order) fully covered by the committed parts.
    pub(super) source_rows_done: u64,
    /// Settings that shape the bytes: a resume must use the same.
    pub(super) batch_size: usize,
    pub(super) rows_per_part: usize,
    /// The manifest so far: committed parts only.
    pub(super) manifest: Manifest,
}

/// The manifest fields that must agree for a resume to continue an earlier run.
fn same_run(a: &Manifest, b: &Manifest) -> std::result::Result<(), String> {
    let checks: [(&str, bool); 12] = [
        ("teacher (sha256)", a.teacher == b.teacher),
        ("temperature", a.temperature == b.temperature),
        ("number of classes", a.num_classes == b.num_classes),
        ("class names", a.class_names == b.class_names),
        ("input column/shape", a.input == b.input),
        ("label column", a.label_column == b.label_column),
        ("id column", a.id_column == b.id_column),
        ("source data (fingerprint)", a.source.fingerprint == b.source.fingerprint),
        ("shard", a.shard == b.shard),
        ("storage form", a.form == b.form),
        ("float16 setting", a.float16 == b.float16),
        ("views setting", a.views == b.views),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(format!("the {what} differs from the interrupted run's")),
        None => Ok(()),
    }
}

impl SoftLabelWriter {
    /// Continues an interrupted run in `dir`: committed parts (listed in `_progress.json`) are verified
    /// (size and sha256) and kept; everything else softlabel wrote is removed. A folder with no journal
    /// starts afresh; a complete dataset is returned as is.
    pub fn resume(dir: &Path, template: Manifest, options: WriterOptions, batch_size: usize) -> Result<Resumed> {
        if !dir.join(PROGRESS).exists() {
            if dir.join(MANIFEST).exists() {
                let m = Manifest::read(dir)?;
                same_run(&m, &template).map_err(|e| Error::dataset(dir, format!("cannot resume: {e}")))?;
                crate::store::SoftLabels::open(dir)?;
                return Ok(Resumed::Complete(Box::new(m)));
            }
            // Interrupted before the first part was committed (or never started): start afresh.
            if dir.exists() {
                let names = entries(dir)?;
                remove_dataset_files(dir, &names, |_| true)?;
            }
            let writer = Self::create(dir, template, WriterOptions { overwrite: false, ..options }, batch_size)?;
            return Ok(Resumed::Continue { writer: Box::new(writer), source_rows_done: 0 });
        }
        let path = dir.join(PROGRESS);
        let text = crate::util::read_text_bounded(
            &path,
            crate::util::Links::Refuse,
            crate::store::MAX_MANIFEST_BYTES,
            "a progress journal",
        )?;
        let progress: Progress =
            serde_json::from_str(&text).map_err(|e| Error::dataset(&path, format!("invalid progress journal: {e}")))?;
        progress.manifest.validate(&path)?;
        let cannot =
            |msg: String| Error::dataset(dir, format!("cannot resume: {msg}; rerun with --overwrite to start again"));
        same_run(&progress.manifest, &template).map_err(cannot)?;
        if progress.batch_size != batch_size {
            return Err(cannot(format!(
                "--batch-size {batch_size} differs from the interrupted run's {}",
                progress.batch_size
            )));
        }
        if progress.rows_per_part != options.rows_per_part {
            return Err(cannot(format!(
                "--rows-per-part {} differs from the interrupted run's {}",
                options.rows_per_part, progress.rows_per_part
            )));
        }
        let committed: Vec<String> = progress.manifest.parts.iter().map(|p| p.file.clone()).collect();
        for part in &progress.manifest.parts {
            if !crate::store::is_part_name(&part.file) {
                return Err(Error::dataset(
                    &path,
                    format!("part name '{}' is not a part-NNNNN.parquet file name", part.file),
                ));
            }
            let p = dir.join(&part.file);
            let (file, bytes) = crate::util::open_regular(&p, crate::util::Links::Refuse)?;
            if bytes != part.bytes || crate::util::sha256_of(&file, &p)? != part.sha256 {
                return Err(cannot(format!("committed part {} was changed since it was written", part.file)));
            }
        }
        let names = entries(dir)?;
        remove_dataset_files(dir, &names, |n| n != PROGRESS && !committed.iter().any(|c| c == n))?;
        let mut manifest = progress.manifest;
        manifest.created_by = template.created_by;
        let writer = Self::with_manifest(dir, manifest, options, batch_size)?;
        Ok(Resumed::Continue { writer: Box::new(writer), source_rows_done: progress.source_rows_done })
    }
}
