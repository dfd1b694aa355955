//! Where the training rows come from, chosen once: in memory when they fit the memory budget (or
//! must be joined to their inputs), else streamed from the dataset in windows. Both are a
//! [`RowSource`]: one scan for the totals, then per epoch a seeded sequence of windows.

use std::path::Path;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::ValSet;
use crate::config::TrainSettings;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{Block, LabelForm, Manifest, RowFilter, Side, SoftLabels, TeacherOutputs};
use crate::student::InputStats;

/// Rows per block read when streaming. An epoch's first window cannot be read ahead (its blocks are
/// drawn when the epoch starts), so the trainer waits for it: for at least one block. MNIST's rows
/// decode in about 10 us each, so 4096-row blocks kept it waiting 40-60 ms an epoch, 2048-row blocks
/// 20-35 ms, at the same CPU (1024-row blocks: no shorter wait, 0-8% more CPU).
pub const STREAM_BLOCK_ROWS: usize = 2048;

/// What one pass over the rows found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Rows to train on.
    pub rows: usize,
    /// Whether any row has a hard label.
    pub any_label: bool,
    /// The input statistics, summed over the rows in file order.
    pub stats: InputStats,
}

/// A window of rows handed to the trainer.
pub enum Window {
    /// The rows of [`RowSource::resident`], the same every epoch (their targets are prepared once).
    Resident,
    /// Rows read for this window only.
    Read(Box<TeacherOutputs>),
}

/// Rows to train on.
pub trait RowSource: Sync {
    /// Values per input row.
    fn width(&self) -> usize;
    /// The most rows a window holds (to size buffers once).
    fn window_rows(&self) -> usize;
    /// One pass over the rows in file order: totals and input statistics; checks every label against `k`.
    fn scan(&self, num_classes: usize, origin: &Path, progress: &dyn Progress) -> Result<Scan>;
    /// One epoch: calls `visit` with each window, in an order drawn from `rng` (which `visit` also gets,
    /// to shuffle the window's rows).
    fn epoch(&self, rng: &mut ChaCha8Rng, visit: &mut dyn FnMut(Window, &mut ChaCha8Rng) -> Result<()>) -> Result<()>;
    /// The rows, when all of them are held in memory for the whole run.
    fn resident(&self) -> Option<&TeacherOutputs> {
        None
    }
    /// Whether the teacher's outputs are stored in a sparse form (top-k or sampled).
    fn sparse(&self) -> bool;
}

/// Every row in memory (loaded, filtered and joined): the fastest.
pub struct MemoryRows {
    data: TeacherOutputs,
}

/// Rows streamed from the dataset, at most `window` at a time: each epoch reads the dataset's blocks
/// ([`STREAM_BLOCK_ROWS`] rows) in a shuffled order into windows; rows whose label is excluded are
/// skipped as they are read.
pub struct StreamRows<'a> {
    labels: &'a SoftLabels,
    blocks: Vec<Block>,
    window: usize,
    filter: RowFilter,
}

/// The rows `settings` trains on: all but the excluded labels and the held-out validation ids.
pub fn train_filter(settings: &TrainSettings) -> RowFilter {
    RowFilter { exclude_labels: settings.exclude_labels.clone(), holdout: settings.holdout.map(|h| (h, Side::Train)) }
}

/// The validation rows held out of `labels` by `settings.holdout` (`--val-fraction`), with their
/// teacher outputs; `None` without a holdout. `join` as for [`open`].
pub fn held_out(labels: &SoftLabels, settings: &TrainSettings, join: Option<(&Path, bool)>) -> Result<Option<ValSet>> {
    let Some(h) = settings.holdout else { return Ok(None) };
    let mut data = labels.load_filtered(&RowFilter { exclude_labels: Vec::new(), holdout: Some((h, Side::Val)) })?;
    if data.is_empty() {
        return Err(Error::dataset(
            labels.dir(),
            format!(
                "--val-fraction {} holds out none of its {} rows; use a larger fraction",
                h.fraction,
                labels.manifest().rows
            ),
        ));
    }
    if let Some((path, ignore_fingerprint)) = join {
        join_source(labels.manifest(), &mut data, path, ignore_fingerprint)?;
    }
    sequence_windows(labels.manifest(), &mut data, settings)?;
    tracing::info!(rows = data.len(), fraction = h.fraction, seed = h.seed, "validation rows held out of the labels");
    let identity = format!("held out of {}", labels.manifest_sha256()?);
    Ok(Some(ValSet::from_outputs(&data, identity)?))
}

/// Joins a label-only dataset's rows to their inputs in `path`, by id.
fn join_source(m: &Manifest, data: &mut TeacherOutputs, path: &Path, ignore_fingerprint: bool) -> Result<()> {
    let spec = crate::data::DataSpec {
        input: m.input.source_column.split(',').map(str::to_string).collect(),
        label_column: None,
        id_column: m.id_column.clone(),
        skip_nonfinite: false,
        labels_npy: None,
        npz_key: None,
        npz_labels: None,
        images: Default::default(),
        image_prep: m.input.image.clone(),
        extra_inputs: Vec::new(),
    };
    data.join_inputs(m, crate::data::open(path, &spec)?.as_ref(), path, ignore_fingerprint)
}

/// Opens the rows of `labels` as `settings` asks: streamed when they need more than the memory budget
/// (and are not joined), else loaded. `join`: the source to join a label-only dataset's inputs from and
/// whether to ignore its fingerprint.
pub fn open<'a>(
    labels: &'a SoftLabels,
    settings: &TrainSettings,
    join: Option<(&Path, bool)>,
) -> Result<Box<dyn RowSource + 'a>> {
    let m = labels.manifest();
    if join.is_none() && !m.input.stored {
        return Err(Error::dataset(
            labels.dir(),
            "was made with --no-inputs: pass --inputs with the data it was made from",
        ));
    }
    if let Some(seq) = &m.sequence {
        // A position's window is read from the rows of its id, which must all be in memory.
        if stream_window(m, settings).is_some() {
            return Err(Error::dataset(
                labels.dir(),
                format!(
                    "is a sequence dataset of {} rows, over --memory-budget {} MiB: sequence datasets are trained \
                     in memory (their windows read each id's rows); raise --memory-budget",
                    m.rows, settings.memory_budget_mib
                ),
            ));
        }
        let Some(embed) = &settings.embed else {
            return Err(Error::Config(
                "a sequence dataset's rows are token windows: train an embed student (--student embed --bag concat)"
                    .into(),
            ));
        };
        if let (crate::store::Targets::Next, Some(v)) = (seq.targets, embed.vocab) {
            if v != m.num_classes {
                return Err(Error::Config(format!(
                    "--vocab {v}: the language model's vocabulary is {} tokens (its outputs predict them); the \
                     student's input vocabulary must be the same {}",
                    m.num_classes, m.num_classes
                )));
            }
        }
        if !settings.exclude_labels.is_empty() {
            return Err(Error::Config(
                "--exclude-labels would drop positions from the windows of their neighbours in a sequence dataset"
                    .into(),
            ));
        }
        tracing::info!(length = seq.length, targets = %seq.targets, window = settings.window, "sequence dataset: windows of tokens");
    }
    if join.is_none() {
        if let Some(window) = stream_window(m, settings) {
            tracing::info!(window, budget_mib = settings.memory_budget_mib, "rows exceed the memory budget: streaming");
            let window = window.max(settings.batch_size).div_ceil(settings.batch_size) * settings.batch_size;
            let blocks = labels.blocks(STREAM_BLOCK_ROWS)?;
            return Ok(Box::new(StreamRows { labels, blocks, window, filter: train_filter(settings) }));
        }
    }
    let mut data = labels.load_filtered(&train_filter(settings))?;
    if !settings.exclude_labels.is_empty() {
        tracing::info!(rows = data.len(), classes = ?settings.exclude_labels, "excluded labels from the transfer set");
        if data.is_empty() {
            return Err(Error::dataset(
                labels.dir(),
                format!("no rows left after excluding labels {:?}", settings.exclude_labels),
            ));
        }
    }
    if let Some((path, ignore_fingerprint)) = join {
        join_source(m, &mut data, path, ignore_fingerprint)?;
    }
    sequence_windows(m, &mut data, settings)?;
    Ok(Box::new(MemoryRows { data }))
}

/// A sequence dataset's rows as the student reads them: the window of tokens around each position
/// (positions outside the sequence or masked read the pad id, or -1, which an embed student masks).
pub fn sequence_windows(m: &Manifest, data: &mut TeacherOutputs, settings: &TrainSettings) -> Result<()> {
    let Some(seq) = &m.sequence else { return Ok(()) };
    let fill = seq.fill(settings.embed.as_ref().and_then(|e| e.pad_id))?;
    crate::store::sequence::windows(data, seq, settings.window, fill)
}

/// Calls `visit` with each of `items` in order while `readers` produce the next: one item ahead, no
/// more (the channel is a rendezvous, so the reader holds at most the item it has made until `visit` is
/// done with the one before). The first error, of either side, ends it; the reader then stops at its
/// next hand-over.
fn read_ahead<T: Send>(
    readers: &rayon::ThreadPool,
    items: impl Iterator<Item = Result<T>> + Send,
    mut visit: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<T>>(0);
    // `visit` runs on this thread; the items are made on one of the pool's workers (and decoded in
    // pieces on the others).
    readers.in_place_scope(|scope| {
        scope.spawn(move |_| {
            for item in items {
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    break;
                }
            }
        });
        // Returning drops `rx`: a reader waiting to hand over its item stops, and the scope ends.
        rx.into_iter().try_for_each(|item| visit(item?))
    })
}

/// The threads that read windows ahead: the cores the trainer leaves free (its threads' count at most),
/// or `None` when it uses them all. Then a reader would only take cores from the trainer: a reader at
/// normal priority beside 2 trainer threads on 2 cores made streamed epochs 1.26x the in-memory ones
/// (1.07x read in turn); one in Linux's idle class starved whenever another process kept the cores
/// busy (8x slower epochs beside two busy loops).
fn reader_pool() -> Result<Option<rayon::ThreadPool>> {
    let trainer = rayon::current_num_threads();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let spare = cores.saturating_sub(trainer).min(trainer);
    if spare == 0 {
        return Ok(None);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(spare)
        .thread_name(|i| format!("softlabel-read-{i}"))
        .build()
        .map(Some)
        .map_err(|e| Error::Internal(format!("cannot start the reading threads: {e}")))
}

/// How a dataset's rows reach the trainer under `settings.memory_budget_mib`: `None` to load them
/// whole (they fit), else the window (rows) to stream them in.
pub fn stream_window(m: &Manifest, settings: &TrainSettings) -> Option<usize> {
    let budget = settings.memory_budget_mib.saturating_mul(1 << 20);
    let per_row = bytes_per_row(m);
    if m.rows.saturating_mul(per_row) <= budget {
        return None;
    }
    // Two windows are held, the one training and the next (read meanwhile, see `read_ahead`): they take
    // 3/4 of the budget, 3/8 each; decoding, the targets and the model take the rest.
    Some(((budget / 8 * 3 / per_row) as usize).max(settings.batch_size))
}

/// Bytes a training row takes in memory: inputs as f32, the teacher's outputs and the targets derived
/// from them. A dataset whose rows need more than the memory budget is streamed.
pub fn bytes_per_row(m: &Manifest) -> u64 {
    let teacher = match m.form {
        LabelForm::Dense => 12 * m.num_classes,
        LabelForm::TopK { k } => 16 * k + 16,
        LabelForm::Sampled { k, .. } => 4 * k,
    };
    (4 * m.input.width + teacher + 48) as u64
}

impl MemoryRows {
    /// Rows already in memory.
    pub fn new(data: TeacherOutputs) -> Self {
        MemoryRows { data }
    }
}

impl RowSource for MemoryRows {
    fn width(&self) -> usize {
        self.data.inputs.ncols()
    }

    fn window_rows(&self) -> usize {
        self.data.len()
    }

    fn scan(&self, num_classes: usize, origin: &Path, _progress: &dyn Progress) -> Result<Scan> {
        let mut stats = InputStats::default();
        stats.add(self.data.inputs.view());
        Ok(Scan {
            rows: self.data.len(),
            any_label: self.data.label_indices(num_classes, origin)?.iter().any(Option::is_some),
            stats,
        })
    }

    fn epoch(&self, rng: &mut ChaCha8Rng, visit: &mut dyn FnMut(Window, &mut ChaCha8Rng) -> Result<()>) -> Result<()> {
        visit(Window::Resident, rng)
    }

    fn resident(&self) -> Option<&TeacherOutputs> {
        Some(&self.data)
    }

    fn sparse(&self) -> bool {
        !matches!(self.data.outputs, crate::store::Outputs::Dense { .. })
    }
}

impl RowSource for StreamRows<'_> {
    fn width(&self) -> usize {
        self.labels.manifest().input.width
    }

    fn window_rows(&self) -> usize {
        self.window
    }

    fn scan(&self, num_classes: usize, origin: &Path, progress: &dyn Progress) -> Result<Scan> {
        let mut scan = Scan::default();
        progress.begin("scan", Some(self.labels.manifest().rows));
        for w in self.labels.windows(&self.blocks, self.window, &self.filter) {
            let w = w?;
            scan.any_label |= w.label_indices(num_classes, origin)?.iter().any(Option::is_some);
            scan.rows += w.len();
            scan.stats.add(w.inputs.view());
            progress.advance(w.len() as u64);
        }
        progress.end();
        tracing::info!(
            rows = scan.rows,
            window = self.window,
            blocks = self.blocks.len(),
            "streaming the training data"
        );
        Ok(scan)
    }

    fn epoch(&self, rng: &mut ChaCha8Rng, visit: &mut dyn FnMut(Window, &mut ChaCha8Rng) -> Result<()>) -> Result<()> {
        let mut shuffled = self.blocks.clone();
        shuffled.shuffle(rng);
        // Where cores are spare, the next window is read on them while this one trains; the windows, and
        // so the run, are the same either way.
        let mut windows = self.labels.windows(&shuffled, self.window, &self.filter);
        match reader_pool()? {
            Some(readers) => read_ahead(&readers, windows, |w| visit(Window::Read(Box::new(w)), rng)),
            // No core to spare: each window is read in turn, in pieces on the trainer's workers.
            None => windows.try_for_each(|w| visit(Window::Read(Box::new(w?)), rng)),
        }
    }

    fn sparse(&self) -> bool {
        !self.labels.manifest().form.is_dense()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::SeedableRng;

    use super::*;
    use crate::progress::NoProgress;
    use crate::store::Outputs;

    #[test]
    fn memory_rows_scan_checks_labels_and_visit_one_resident_window() {
        let data = TeacherOutputs {
            ids: vec![0, 1, 2],
            labels: vec![Some(0), None, Some(1)],
            inputs: Array2::from_shape_vec((3, 2), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
            outputs: Outputs::Dense { logits: Array2::zeros((3, 2)) },
            views: None,
            positions: None,
        };
        let rows = MemoryRows::new(data.clone());
        let scan = rows.scan(2, Path::new("d"), &NoProgress).unwrap();
        assert_eq!((scan.rows, scan.any_label, rows.width()), (3, true, 2));
        let e = rows.scan(1, Path::new("d"), &NoProgress).unwrap_err().to_string();
        assert!(e.contains("d: column 'label', id 2: label 1 is outside [0, 1)"), "{e}");
        let mut windows = 0;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        rows.epoch(&mut rng, &mut |w, _| {
            windows += 1;
            assert!(matches!(w, Window::Resident));
            Ok(())
        })
        .unwrap();
        assert_eq!(windows, 1);
        assert_eq!(rows.resident().map(TeacherOutputs::len), Some(3));
    }

    #[test]
    fn the_memory_budget_decides_between_loading_and_streaming() {
        let mut m: Manifest = serde_json::from_str(include_str!("../../fuzz/manifest.json")).unwrap();
        m.rows = 1_000_000; // 4 inputs + 3 dense classes: 100 bytes a row, ~95 MiB in all
        let settings = |mib| {
            crate::config::TrainConfig { memory_budget_mib: mib, batch_size: 8, ..Default::default() }
                .validate(&crate::config::Origin::Flags)
                .unwrap()
        };
        let need = m.rows * bytes_per_row(&m);
        assert_eq!(bytes_per_row(&m), 4 * 4 + 12 * 3 + 48);
        assert_eq!(stream_window(&m, &settings(need.div_ceil(1 << 20))), None);
        // 1 MiB: two windows of 3/8 MiB, 3932 rows of 100 bytes.
        assert_eq!(stream_window(&m, &settings(1)), Some(3932));
    }

    #[test]
    fn read_ahead_visits_in_order_and_stops_at_the_first_error() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let made = AtomicUsize::new(0);
        let items = || {
            (0..100).map(|i| {
                made.fetch_add(1, Ordering::SeqCst);
                if i == 50 {
                    Err(Error::Internal(format!("item {i}")))
                } else {
                    Ok(i)
                }
            })
        };
        // In order, until the reader's error, which ends it.
        let mut seen = Vec::new();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let e = read_ahead(&pool, items(), |i| {
            seen.push(i);
            Ok(())
        })
        .unwrap_err();
        assert_eq!((seen, e.to_string()), ((0..50).collect::<Vec<_>>(), "internal error: item 50".to_string()));
        assert_eq!(made.swap(0, Ordering::SeqCst), 51, "nothing is read past the error");
        // The visitor's error ends it too: the reader is at most one item ahead (the one it made while
        // item 3 was visited), and does not hang.
        let e = read_ahead(&pool, items(), |i| if i == 3 { Err(Error::Internal("visit 3".into())) } else { Ok(()) });
        assert_eq!(e.unwrap_err().to_string(), "internal error: visit 3");
        assert!(made.load(Ordering::SeqCst) <= 5, "read {} items", made.load(Ordering::SeqCst));
    }
}
