//! Three stages overlap, joined by bounded channels: a reader thread decodes source batches, the
//! calling thread scores them (ONNX Runtime), and a writer thread softens, encodes and writes parts.
//! On a fresh run a fourth thread hashes the source meanwhile; the writer awaits it before the first
//! part is committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use super::score::{Primed, Scored, Scorer};
use super::Plan;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{Manifest, ScoredRows, WRITE_BLOCK};

/// What the scoring stage sends the writer: the writer finishes the dataset only on `Done`, so a
/// failure anywhere upstream never produces a manifest.
enum ToWriter {
    Rows(Box<ScoredRows>, Vec<u64>),
    Skipped(Vec<u64>),
    Done,
}

/// Runs the plan's pass to the end; returns the manifest.
pub(super) fn run(plan: Plan, progress: &dyn Progress) -> Result<Manifest> {
    let Plan {
        settings,
        source,
        mut teacher,
        width,
        column,
        num_classes,
        views,
        mut writer,
        skip,
        seen,
        lock: _lock,
        probe,
    } = plan;
    let extra_widths = probe.as_ref().map(|p| p.batch.extra.iter().map(|e| e.width).collect()).unwrap_or_default();
    let mut teacher = Primed { teacher: teacher.as_mut(), probe, features: None };
    let renderer = views.as_ref().filter(|v| v.crop.is_some()).and_then(|_| source.view_renderer());
    let mut scorer = Scorer {
        extra_widths,
        renderer,
        width,
        column: &column,
        num_classes,
        shard: settings.shard,
        views: views.as_ref(),
        skip,
        label_column: source.label_column().unwrap_or("label"),
        id_column: source.id_column().unwrap_or("(row index)"),
        seen,
        sequence: writer.manifest().sequence.clone(),
    };
    progress.begin("precompute", Some(source.rows().saturating_sub(skip)));
    let stop_hashing = AtomicBool::new(false);
    let result = std::thread::scope(|scope| -> Result<Manifest> {
        let (batch_tx, batch_rx) = sync_channel::<Result<Batch>>(2);
        // The writer works in bursts (a block of WRITE_BLOCK rows, a row group's bytes to the file): room
        // for 8 blocks of batches keeps inference from waiting on one (a 2-batch channel blocked ONNX
        // Runtime for 1.4 s of a 13 s run on a 1000-class teacher).
        let depth = (8 * WRITE_BLOCK / settings.batch_size.max(1)).clamp(2, 64);
        let (scored_tx, scored_rx) = sync_channel::<ToWriter>(depth);
        let source = source.as_ref();
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
        // A resumed run hashed the source in the plan, to compare it with its committed parts'.
        if !settings.resume {
            let (tx, rx) = std::sync::mpsc::channel();
            let stop = &stop_hashing;
            thread("sl-hash")
                .spawn_scoped(scope, move || {
                    let _ = tx.send(source.source_info_until(stop));
                })
                .map_err(|e| Error::Internal(format!("cannot start the hashing thread: {e}")))?;
            writer.source_later(rx);
        }
        let writer_thread = thread("sl-write")
            .spawn_scoped(scope, move || -> Result<Manifest> {
                for msg in scored_rx {
                    match msg {
                        ToWriter::Rows(rows, skipped) => {
                            writer.skipped(&skipped);
                            writer.write(&rows)?;
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
                progress
                    .advance(batch.len() as u64 - skip.saturating_sub(batch.first_source_row).min(batch.len() as u64));
                let started = std::time::Instant::now();
                let scored = scorer.score(batch, &mut teacher)?;
                inference += started.elapsed();
                let msg = match scored {
                    Scored::Rows(rows, skipped) => ToWriter::Rows(rows, skipped),
                    Scored::Skipped(rows) => ToWriter::Skipped(rows),
                    Scored::Nothing => continue,
                };
                if scored_tx.send(msg).is_err() {
                    break; // the writer failed; its error is returned below
                }
            }
            Ok(())
        })();
        tracing::info!(scoring_seconds = inference.as_secs_f64(), "teacher inference done");
        if infer.is_ok() {
            let _ = scored_tx.send(ToWriter::Done);
        }
        drop(scored_tx);
        if let Err(e) = infer {
            // Dropping the channel ends the writer; its unfinished part is removed and no manifest written.
            stop_hashing.store(true, Ordering::Relaxed);
            let _ = writer_thread.join();
            return Err(e);
        }
        let written = writer_thread.join().map_err(|_| Error::Internal("writer thread panicked".into()));
        if !matches!(written, Ok(Ok(_))) {
            stop_hashing.store(true, Ordering::Relaxed);
        }
        written?
    });
    progress.end();
    result
}
