//! `precompute`: run the teacher over a dataset and write a soft-label dataset.
//!
//! Three stages overlap, joined by bounded channels: a reader thread decodes Parquet batches, the
//! calling thread runs ONNX Runtime, and a writer thread softens, encodes and writes parts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use arrow_array::ArrayRef;

use crate::augment::{ViewColumns, ViewOptions};
use crate::dataset::{Batch, DataSource, DataSpec};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{EnsembleInfo, WRITE_BLOCK};
use crate::store::{
    InputInfo, LabelForm, Manifest, Resumed, Shard, SoftLabelWriter, SoftLabels, TeacherInfo, WriterOptions, FORMAT,
    SCHEMA_VERSION, SCHEMA_VERSION_SPARSE, SCHEMA_VERSION_VIEWS,
};
use crate::teacher::{Combine, Ensemble, OutputKind, Teacher, TeacherOptions};

/// Everything `precompute` needs, validated by [`PrecomputeSettings::validate`] before any model loads.
#[derive(Debug, Clone)]
pub struct PrecomputeSettings {
    /// The ONNX teacher(s): several form an ensemble.
    pub teachers: Vec<PathBuf>,
    /// How an ensemble's outputs are combined.
    pub combine: Combine,
    /// A Parquet file or folder.
    pub data: PathBuf,
    /// Which columns hold what.
    pub spec: DataSpec,
    /// Softmax temperature for the `soft` column.
    pub temperature: f32,
    /// Output folder.
    pub out: PathBuf,
    /// Rows per inference call.
    pub batch_size: usize,
    /// ONNX Runtime threads and library.
    pub teacher_options: TeacherOptions,
    /// Class names, when known.
    pub class_names: Option<Vec<String>>,
    /// Part size, compression, overwrite.
    pub writer: WriterOptions,
    /// Continue an interrupted run in `out` (see [`SoftLabelWriter::resume`]).
    pub resume: bool,
    /// Process only this shard of the rows.
    pub shard: Option<Shard>,
    /// How to store the teacher's outputs: dense, top-k or sampled.
    pub form: LabelForm,
    /// Leave the input column out (label-only dataset; `train --inputs` joins the source by id).
    pub no_inputs: bool,
    /// Store logits and probabilities as float16.
    pub float16: bool,
    /// Augmented views of every row (`--views`); `None`: each row once, as it is.
    pub views: Option<ViewOptions>,
}

/// Checks a temperature: finite and > 0.
pub fn check_temperature(t: f32) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!("temperature must be finite and > 0, got {t}")))
    }
}

impl PrecomputeSettings {
    /// Checks the settings that need no file.
    pub fn validate(&self) -> Result<()> {
        check_temperature(self.temperature)?;
        if self.batch_size == 0 {
            return Err(Error::Config("--batch-size must be > 0".into()));
        }
        if let Some(names) = &self.class_names {
            if names.iter().any(|n| n.is_empty()) {
                return Err(Error::Config("--class-names has an empty name".into()));
            }
        }
        if self.resume && self.writer.overwrite {
            return Err(Error::Config("--resume and --overwrite exclude each other".into()));
        }
        self.spec.validate()
    }
}

struct Scored {
    ids: Vec<u64>,
    labels: Vec<Option<i64>>,
    input: ArrayRef,
    logits: Vec<f32>,
    source_rows: Vec<u64>,
    views: Option<ViewColumns>,
    /// Source rows skipped for non-finite inputs in the same batch.
    skipped: Vec<u64>,
}

/// What the inference stage sends the writer: the writer finishes the dataset only on `Done`, so a
/// failure anywhere upstream never produces a manifest.
enum ToWriter {
    Rows(Scored),
    Skipped(Vec<u64>),
    Done,
}

/// Runs the teacher over `settings.data` and writes the dataset; returns its manifest.
pub fn precompute(settings: &PrecomputeSettings, progress: &dyn Progress) -> Result<Manifest> {
    settings.validate()?;
    let source = DataSource::open(&settings.data, &settings.spec)?;
    let mut teacher = Ensemble::load(&settings.teachers, &settings.teacher_options, settings.combine)?;
    if source.rows() == 0 {
        return Err(Error::data(&settings.data, "dataset has zero rows"));
    }
    // The width comes from the schema when fixed, else from the first batch.
    let width = match source.width() {
        Some(w) => w,
        None => match source.batches(1).next() {
            Some(b) => b?.width,
            None => return Err(Error::data(&settings.data, "dataset has zero rows")),
        },
    };
    let column = source.input_name();
    let row_shape = teacher.prepare(width, &column)?;
    let views = settings.views.map(|v| v.resolve(width, &row_shape)).transpose()?;
    let source_info = source.source_info()?;

    // A first inference call learns K before any output exists (models often leave it dynamic) and,
    // with --teacher-output auto, what the outputs are (logits, probabilities or log-probabilities).
    let first = source
        .batches(settings.batch_size)
        .next()
        .ok_or_else(|| Error::data(&settings.data, "dataset has zero rows"))??;
    check_width(&first, width, &column)?;
    let (_, num_classes) = teacher.run(&first)?;
    match settings.form {
        LabelForm::TopK { k } if k == 0 || k > num_classes => {
            return Err(Error::Config(format!("--top-k {k} must be in 1..={num_classes} (the teacher's classes)")))
        }
        LabelForm::Sampled { k: 0, .. } => return Err(Error::Config("--sample-k must be > 0".into())),
        _ => {}
    }
    if let Some(names) = &settings.class_names {
        if names.len() != num_classes {
            return Err(Error::Config(format!(
                "--class-names lists {} names, teacher {} has {num_classes} classes",
                names.len(),
                teacher.first().path().display()
            )));
        }
    }
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let members: Vec<TeacherInfo> = teacher.members().iter().map(|m| member_info(m, &file_name(m.path()))).collect();
    let manifest = Manifest {
        format: FORMAT.into(),
        schema_version: if views.is_some() {
            SCHEMA_VERSION_VIEWS
        } else if settings.form.is_dense() && !settings.float16 {
            SCHEMA_VERSION
        } else {
            SCHEMA_VERSION_SPARSE
        }
        .into(),
        created_by: format!("softlabel {}", env!("CARGO_PKG_VERSION")),
        temperature: settings.temperature,
        num_classes,
        class_names: settings.class_names.clone(),
        teacher: if members.len() == 1 {
            members[0].clone()
        } else {
            TeacherInfo {
                file: members.iter().map(|m| m.file.as_str()).collect::<Vec<_>>().join("+"),
                sha256: teacher.sha256(),
                output_name: "ensemble".into(),
                output_kind: OutputKind::Logits,
                ..members[0].clone()
            }
        },
        ensemble: (members.len() > 1).then(|| EnsembleInfo { combine: teacher.combine(), members: members.clone() }),
        input: InputInfo {
            source_column: column.clone(),
            dtype: source.element_type(),
            width,
            shape: row_shape.clone(),
            stored: !settings.no_inputs,
        },
        label_column: source.label_column().map(str::to_string),
        id_column: source.id_column().map(str::to_string),
        source: source_info,
        rows: 0,
        labeled_rows: 0,
        parts: Vec::new(),
        checksum: String::new(),
        shard: settings.shard,
        skipped_nonfinite_rows: 0,
        form: settings.form,
        float16: settings.float16,
        views,
    };
    let (mut writer, skip) = if settings.resume {
        match SoftLabelWriter::resume(&settings.out, manifest, settings.writer.clone(), settings.batch_size)? {
            Resumed::Complete(m) => return Ok(*m),
            Resumed::Continue { writer, source_rows_done } => (*writer, source_rows_done),
        }
    } else {
        (SoftLabelWriter::create(&settings.out, manifest, settings.writer.clone(), settings.batch_size)?, 0)
    };
    // Ids already committed count for the duplicate check.
    let mut seen: HashSet<u64> = HashSet::with_capacity(source.rows() as usize);
    if !writer.manifest().parts.is_empty() {
        let committed = SoftLabels::from_parts(writer.dir(), writer.manifest().clone());
        seen.extend(committed.ids()?);
        tracing::info!(rows = seen.len(), skip, "resuming after committed parts");
    }

    progress.begin("precompute", Some(source.rows().saturating_sub(skip)));
    let result = std::thread::scope(|scope| -> Result<Manifest> {
        let (batch_tx, batch_rx) = sync_channel::<Result<Batch>>(2);
        // The writer encodes in blocks of WRITE_BLOCK rows, a burst of work every WRITE_BLOCK / batch_size
        // batches: room for a block's worth of batches keeps inference from waiting on a burst (a 2-batch
        // channel blocked ONNX Runtime for 1.4 s of a 13 s run on a 1000-class teacher).
        let depth = (WRITE_BLOCK / settings.batch_size.max(1)).clamp(2, 64);
        let (scored_tx, scored_rx) = sync_channel::<ToWriter>(depth);
        let source = &source;
        let batch_size = settings.batch_size;
        let thread = |name: &str| std::thread::Builder::new().name(name.to_string());
        let spawned = thread("sl-read").spawn_scoped(scope, move || {
            for b in source.batches_from(batch_size, skip) {
                let stop = b.is_err();
                if batch_tx.send(b).is_err() || stop {
                    break;
                }
            }
        });
        spawned.map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;
        let writer_thread = thread("sl-write")
            .spawn_scoped(scope, move || -> Result<Manifest> {
                for msg in scored_rx {
                    match msg {
                        ToWriter::Rows(s) => {
                            writer.skipped(&s.skipped);
                            writer.write(&s.ids, &s.labels, &s.input, &s.logits, &s.source_rows, s.views.as_ref())?;
                        }
                        ToWriter::Skipped(rows) => writer.skipped(&rows),
                        ToWriter::Done => return writer.finish(),
                    }
                }
                Err(Error::Internal("precompute stopped before the last batch".into()))
            })
            .map_err(|e| Error::Internal(format!("cannot start the writer thread: {e}")))?;

        let mut inference = std::time::Duration::ZERO;
        let infer = (|| -> Result<()> {
            for batch in batch_rx {
                let batch = batch?;
                check_width(&batch, width, &column)?;
                progress
                    .advance(batch.len() as u64 - skip.saturating_sub(batch.first_source_row).min(batch.len() as u64));
                // Only this shard's rows with finite inputs go to the teacher; otherwise the teacher gets
                // every batch whole, as an uninterrupted run does, even the first one after a resume point.
                let owned: Vec<bool> = batch.ids.iter().map(|&id| settings.shard.is_none_or(|s| s.owns(id))).collect();
                let skipped: Vec<u64> = batch
                    .nonfinite
                    .iter()
                    .filter(|&&i| owned[i])
                    .map(|&i| batch.first_source_row + i as u64)
                    .filter(|&r| r >= skip)
                    .collect();
                let (batch, source_rows) = if settings.shard.is_none() && batch.nonfinite.is_empty() {
                    let rows = (batch.first_source_row..batch.first_source_row + batch.len() as u64).collect();
                    (batch, rows)
                } else {
                    let mut keep = owned;
                    batch.nonfinite.iter().for_each(|&i| keep[i] = false);
                    batch.retain(&keep)?
                };
                if batch.is_empty() {
                    if !skipped.is_empty() && scored_tx.send(ToWriter::Skipped(skipped)).is_err() {
                        break;
                    }
                    continue;
                }
                if let Some((i, y)) = batch
                    .labels
                    .iter()
                    .enumerate()
                    .find_map(|(i, l)| l.filter(|&y| y < 0 || y as usize >= num_classes).map(|y| (i, y)))
                {
                    return Err(Error::data(
                        &batch.file,
                        format!(
                            "column '{}', row {}: label {y} is outside [0, {num_classes}) (the teacher has {num_classes} classes)",
                            source.label_column().unwrap_or("label"),
                            row_in_file(&batch, source_rows[i])
                        ),
                    ));
                }
                // Each row's views go to the teacher together, in order, as rows of one larger batch.
                let (batch, source_rows, view_cols) = match &views {
                    Some(v) => {
                        let (b, rows, cols) = v.expand(&batch, &source_rows)?;
                        (b, rows, Some(cols))
                    }
                    None => (batch, source_rows, None),
                };
                let started = std::time::Instant::now();
                let (mut logits, k) = teacher.run(&batch)?;
                inference += started.elapsed();
                if k != num_classes {
                    return Err(Error::model(
                        teacher.first().path(),
                        format!("output has {k} classes, earlier batches had {num_classes}"),
                    ));
                }
                // Rows before the resume point are already in committed parts.
                let from = source_rows.partition_point(|&r| r < skip);
                if from == source_rows.len() {
                    continue;
                }
                let n = batch.len() - from;
                let (ids, labels) = (batch.ids[from..].to_vec(), batch.labels[from..].to_vec());
                let input = batch.input.slice(from * width, n * width);
                let logits = logits.split_off(from * k);
                let source_rows = source_rows[from..].to_vec();
                let view_cols = view_cols.map(|v| v.slice(from, n));
                let id_col = source.id_column().unwrap_or("(row index)");
                for (i, id) in ids.iter().enumerate() {
                    // A row's views share its id; its first view is checked.
                    let first_view = view_cols.as_ref().is_none_or(|v| v.view[i] == 0);
                    if first_view && !seen.insert(*id) {
                        return Err(Error::data(
                            &batch.file,
                            format!(
                                "column '{id_col}', row {}: duplicate id {id}",
                                row_in_file(&batch, source_rows[i])
                            ),
                        ));
                    }
                }
                // -inf is a valid logit (log of a probability of 0); NaN, +inf and all--inf rows are not.
                let bad_row =
                    logits.chunks_exact(k).position(|r| r.iter().all(|&z| z == f32::NEG_INFINITY)).map(|r| r * k);
                if let Some(pos) = logits.iter().position(|z| z.is_nan() || *z == f32::INFINITY).or(bad_row) {
                    return Err(Error::model(
                        teacher.first().path(),
                        format!(
                            "teacher produced a non-finite logit ({}) for {}, row {} (id {})",
                            logits[pos],
                            batch.file.display(),
                            row_in_file(&batch, source_rows[pos / k]),
                            ids[pos / k]
                        ),
                    ));
                }
                let scored = Scored { ids, labels, input, logits, source_rows, views: view_cols, skipped };
                if scored_tx.send(ToWriter::Rows(scored)).is_err() {
                    break; // the writer failed; its error is returned below
                }
            }
            Ok(())
        })();
        tracing::info!(inference_seconds = inference.as_secs_f64(), "teacher inference done");
        if infer.is_ok() {
            let _ = scored_tx.send(ToWriter::Done);
        }
        drop(scored_tx);
        if let Err(e) = infer {
            // Dropping the channel ends the writer; its unfinished part is removed and no manifest written.
            let _ = writer_thread.join();
            return Err(e);
        }
        writer_thread.join().map_err(|_| Error::Internal("writer thread panicked".into()))?
    });
    progress.end();
    result
}

/// The position in its file of the batch row at `source_row`.
fn row_in_file(batch: &Batch, source_row: u64) -> u64 {
    batch.first_row + (source_row - batch.first_source_row)
}

fn check_width(batch: &Batch, width: usize, column: &str) -> Result<()> {
    if batch.width != width {
        return Err(Error::data(
            &batch.file,
            format!(
                "column '{column}', row {}: rows have {} values, earlier rows have {width}",
                batch.first_row, batch.width
            ),
        ));
    }
    Ok(())
}

fn member_info(m: &Teacher, file: &str) -> TeacherInfo {
    TeacherInfo {
        file: file.to_string(),
        sha256: m.sha256().to_string(),
        input_name: m.input_name().to_string(),
        input_shape: m.input_shape().to_vec(),
        output_name: m.output_name().to_string(),
        output_kind: m.output_kind(),
    }
}
