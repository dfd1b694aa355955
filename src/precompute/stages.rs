//! Three stages overlap, joined by bounded channels (the one to the writer by bytes as well): a reader
//! thread decodes source batches, the calling thread scores them (ONNX Runtime), and a writer thread
//! softens, encodes and writes parts. On a fresh run a fourth thread hashes the source meanwhile; the
//! writer awaits it before the first part is committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Condvar, Mutex, PoisonError};

use super::score::{Primed, Scored, Scorer};
use super::Plan;
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{Manifest, ScoredRows, WRITE_BLOCK};

/// What the scoring stage sends the writer: the writer finishes the dataset only on `Done`, so a
/// failure anywhere upstream never produces a manifest.
enum ToWriter {
    /// Rows, the ids skipped before them, and what they count in the queue's bound ([`Held`]).
    Rows(Box<ScoredRows>, Vec<u64>, Load),
    Skipped(Vec<u64>),
    Done,
}

/// The queue from inference to the writer holds up to two write blocks of rows (the writer works in
/// bursts of a block: room for two keeps inference from waiting on one), and beyond them up to this
/// many bytes. Bounded by batches alone it held 32 batches whatever their size: 7 MB of MNIST rows, 64
/// MB of a 1000-class teacher's.
const QUEUE_BYTES: usize = 4 << 20;

/// Rows and bytes of one message in the queue.
#[derive(Clone, Copy, Default)]
struct Load {
    rows: usize,
    bytes: usize,
}

/// What the queue to the writer holds ([`QUEUE_BYTES`]): inference waits while another batch would
/// pass the bound; the writer gives each batch's share back once it has written it, and closes the
/// account when it ends, so inference never waits on a writer that is gone.
#[derive(Default)]
struct Held {
    state: Mutex<(Load, bool)>,
    changed: Condvar,
}

impl Held {
    /// Waits until `load` fits, then counts it in; false once the writer has ended.
    fn take(&self, load: Load) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (held, closed) = *state;
            let fits =
                held.rows == 0 || held.rows + load.rows <= 2 * WRITE_BLOCK || held.bytes + load.bytes <= QUEUE_BYTES;
            if closed || fits {
                break;
            }
            state = self.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.0.rows += load.rows;
        state.0.bytes += load.bytes;
        !state.1
    }

    fn give(&self, load: Load) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.rows -= load.rows;
        state.0.bytes -= load.bytes;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.changed.notify_all();
    }
}

/// Closes a [`Held`] when dropped: however the writer thread ends, an error or a panic included.
struct CloseOnDrop<'a>(&'a Held);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Runs the plan's pass to the end; returns the manifest.
pub(super) fn run(plan: Plan, progress: &dyn Progress) -> Result<Manifest> {
    let Plan {
        settings,
        source,
        teacher,
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
    let held = Held::default();
    let result = std::thread::scope(|scope| -> Result<Manifest> {
        let (batch_tx, batch_rx) = sync_channel::<Result<Batch>>(2);
        // The writer works in bursts (a block of WRITE_BLOCK rows, a row group's bytes to the file): room
        // for 8 blocks of batches keeps inference from waiting on one (a 2-batch channel blocked ONNX
        // Runtime for 1.4 s of a 13 s run on a 1000-class teacher); `held` bounds their bytes.
        let held = &held;
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
                let _close = CloseOnDrop(held);
                for msg in scored_rx {
                    match msg {
                        ToWriter::Rows(rows, skipped, load) => {
                            writer.skipped(&skipped);
                            writer.write(&rows)?;
                            drop(rows);
                            held.give(load);
                        }
                        ToWriter::Skipped(rows) => writer.skipped(&rows),
                        ToWriter::Done => return writer.finish(),
                    }
                }
                Err(Error::Internal("precompute stopped before the last batch".into()))
            })
            .map_err(|e| Error::Internal(format!("cannot start the writer thread: {e}")))?;

        let mut owned = teacher;
        let mut teacher = Primed { teacher: owned.as_mut(), probe, features: None };
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
                    Scored::Rows(rows, skipped) => {
                        let load = Load { rows: rows.ids.len(), bytes: rows.bytes() };
                        if !held.take(load) {
                            break; // the writer failed; its error is returned below
                        }
                        ToWriter::Rows(rows, skipped, load)
                    }
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
        // The teacher's session is freed here, while the writer encodes its last rows and syncs the part,
        // rather than after: ONNX Runtime's teardown overlaps the end.
        drop(teacher);
        drop(owned);
        tracing::debug!("teacher freed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{channel, TryRecvError};
    use std::time::Duration;

    const MB: usize = 1 << 20;

    /// Runs `held.take(load)` on another thread, checks it is still waiting 100 ms later, runs
    /// `release` and returns what `take` then returned.
    fn waits_until(held: &Held, load: Load, release: impl FnOnce()) -> bool {
        std::thread::scope(|scope| {
            let (tx, rx) = channel();
            scope.spawn(move || {
                let _ = tx.send(held.take(load));
            });
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "the batch waits");
            release();
            rx.recv_timeout(Duration::from_secs(10)).expect("released")
        })
    }

    /// The queue admits two blocks of rows whatever their size, then batches while they fit in
    /// QUEUE_BYTES; past both, a batch waits until the writer gives rows back, or closes.
    #[test]
    fn held_bounds_rows_and_bytes() {
        let held = Held::default();
        let big = Load { rows: WRITE_BLOCK, bytes: 10 * MB };
        assert!(held.take(big));
        assert!(held.take(big), "two blocks of rows are always room, however many bytes");
        let small = Load { rows: 256, bytes: 256 };
        assert!(waits_until(&held, small, || held.give(big)), "room again once a block is written");
        // Under the byte bound, more rows fit: 16 batches of 0.25 MB (4 MB), though 8 hold two blocks.
        let held = Held::default();
        let quarter = Load { rows: 256, bytes: MB / 4 };
        assert_eq!(QUEUE_BYTES, 16 * quarter.bytes);
        for _ in 0..16 {
            assert!(held.take(quarter));
        }
        assert!(!waits_until(&held, quarter, || held.close()), "a closed queue lets it go, refused");
    }
}
