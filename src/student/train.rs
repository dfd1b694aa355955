//! The training loop: mini-batch distillation, data-parallel over rayon workers.
//!
//! Each batch is split into one contiguous chunk per worker; every worker runs forward and backward on
//! its chunk into its own preallocated workspace (no allocation per step), the gradients are summed in
//! a fixed order, and the optimizer updates the weights in parallel. Same seed and same thread count
//! give bit-identical weights.

use std::path::Path;
use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array1, Array2, ArrayView2, Zip};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::checkpoint::{self, Checkpointing};
use super::loss::{kd_row, kd_row_sampled, kd_row_topk};
use super::mlp::InputStats;
use super::mlp::{gather_scaled, Mlp};
use super::optim::{LrSchedule, Optimizer};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::soften::{argmax, log_softmax_t, softmax_t};
use crate::store::{LabelForm, Manifest, SoftLabels, Sparse, TeacherOutputs};

/// Training settings; [`TrainSettings::validate`] runs before any data is read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    /// Hidden layer sizes.
    pub hidden: Vec<usize>,
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Optimizer and its hyper-parameters.
    pub optimizer: Optimizer,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Linear warm-up, in epochs (may be fractional).
    pub warmup_epochs: f32,
    /// Weight of the distillation term (1: soft targets only, 0: hard labels only).
    pub alpha: f32,
    /// Distillation temperature; `None`: the one the labels were made with.
    pub temperature: Option<f32>,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Clip the gradient's global L2 norm to this value.
    pub clip_norm: Option<f32>,
    /// Hard labels whose rows are left out of the transfer set (streamed data is filtered here; data in
    /// memory is loaded without them, [`crate::store::SoftLabels::load_excluding`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_labels: Vec<i64>,
    /// Memory for the training rows, in MiB: a dataset that needs more is streamed from disk in windows
    /// of this size instead of loaded whole (see [`bytes_per_row`]).
    #[serde(default = "default_budget")]
    pub memory_budget_mib: u64,
}

fn default_budget() -> u64 {
    DEFAULT_MEMORY_BUDGET_MIB
}

/// The default memory budget for training rows, in MiB.
pub const DEFAULT_MEMORY_BUDGET_MIB: u64 = 2048;

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            hidden: vec![800, 800],
            epochs: 20,
            batch_size: 128,
            optimizer: Optimizer::Adam(Default::default()),
            schedule: LrSchedule::Cosine,
            warmup_epochs: 0.0,
            alpha: 0.9,
            temperature: None,
            seed: 0,
            clip_norm: None,
            exclude_labels: Vec::new(),
            memory_budget_mib: DEFAULT_MEMORY_BUDGET_MIB,
        }
    }
}

impl TrainSettings {
    /// Checks every setting that needs no data.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.alpha.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            return bad(format!("--alpha must be in [0, 1], got {}", self.alpha));
        }
        if let Some(t) = self.temperature {
            crate::precompute::check_temperature(t)?;
        }
        if self.hidden.contains(&0) {
            return bad("--hidden sizes must be > 0".into());
        }
        if self.memory_budget_mib == 0 {
            return bad("--memory-budget must be > 0 MiB".into());
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("--epochs and --batch-size must be > 0".into());
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad(format!("--warmup-epochs must be >= 0, got {}", self.warmup_epochs));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("--clip-norm must be finite and > 0, got {c}"));
            }
        }
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("--lr must be finite and > 0, got {lr}"));
        }
        match self.optimizer {
            Optimizer::Sgd(s) => {
                let momentum_ok = (0.0..1.0).contains(&s.momentum);
                if !(momentum_ok && s.weight_decay.is_finite() && s.weight_decay >= 0.0) {
                    return bad("--momentum must be in [0, 1) and --weight-decay >= 0".into());
                }
            }
            Optimizer::Adam(a) => {
                if !(a.weight_decay.is_finite() && a.weight_decay >= 0.0) {
                    return bad("--weight-decay must be >= 0".into());
                }
            }
        }
        Ok(())
    }
}

/// One line of the training log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean loss over the epoch's steps.
    pub train_loss: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Accuracy on the validation set, if one was given.
    pub val_accuracy: Option<f64>,
    /// Errors on the validation set.
    pub val_errors: Option<u64>,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
}

/// The result of [`train`].
#[derive(Debug, Clone)]
pub struct TrainedStudent {
    /// The network.
    pub mlp: Mlp,
    /// Per-epoch log.
    pub log: Vec<EpochLog>,
    /// The temperature used.
    pub temperature: f32,
    /// Rows trained on per epoch.
    pub rows: usize,
}

/// Labelled rows to report accuracy on after each epoch.
#[derive(Debug, Clone)]
pub struct ValSet {
    /// Raw inputs, `[rows, width]`.
    pub inputs: Array2<f32>,
    /// Labels.
    pub labels: Vec<i64>,
}

impl ValSet {
    /// Errors of `mlp` on this set.
    pub fn errors(&self, mlp: &Mlp) -> u64 {
        let logits = mlp.forward(self.inputs.view());
        logits
            .rows()
            .into_iter()
            .zip(&self.labels)
            .filter(|(r, &y)| argmax(r.as_slice().unwrap_or(&[])) != Some(y as usize))
            .count() as u64
    }
}

/// Per-worker buffers, allocated once for the largest chunk.
struct Workspace {
    x: Array2<f32>,
    acts: Vec<Array2<f32>>,
    delta: Vec<Array2<f32>>,
    gw: Vec<Array2<f32>>,
    gb: Vec<Array1<f32>>,
    loss: f64,
    rows: usize,
}

impl Workspace {
    fn new(mlp: &Mlp, cap: usize) -> Self {
        Workspace {
            x: Array2::zeros((cap, mlp.input_dim())),
            acts: mlp.layers.iter().map(|l| Array2::zeros((cap, l.b.len()))).collect(),
            delta: mlp.layers.iter().map(|l| Array2::zeros((cap, l.b.len()))).collect(),
            gw: mlp.layers.iter().map(|l| Array2::zeros(l.w.raw_dim())).collect(),
            gb: mlp.layers.iter().map(|l| Array1::zeros(l.b.len())).collect(),
            loss: 0.0,
            rows: 0,
        }
    }
}

struct Targets<'a> {
    teacher: &'a TeacherTargets<'a>,
    labels: &'a [Option<usize>],
    t: f32,
    alpha: f32,
}

/// The teacher's side of the loss, per storage form.
enum TeacherTargets<'a> {
    /// softmax(logits / T) and its log, `[rows, K]`.
    Dense { soft: Array2<f32>, log_soft: Array2<f32> },
    /// Top-k: stored classes, their p_T (exact) and the residual mass.
    TopK { index: &'a Array2<u32>, p: Array2<f64>, residual: Vec<f64> },
    /// Sampled classes.
    Sampled { index: &'a Array2<u32> },
}

impl Targets<'_> {
    /// Adds row `i`'s loss gradient (scaled) to `g` and returns its loss.
    fn row(&self, i: usize, z: &[f32], scale: f32, g: &mut [f32]) -> f64 {
        let (label, t, alpha) = (self.labels[i], self.t, self.alpha);
        match self.teacher {
            TeacherTargets::Dense { soft, log_soft } => {
                let (p, lp) = (soft.row(i), log_soft.row(i));
                kd_row(z, p.as_slice().unwrap_or(&[]), lp.as_slice().unwrap_or(&[]), label, t, alpha, scale, g)
            }
            TeacherTargets::TopK { index, p, residual } => {
                let (idx, p) = (index.row(i), p.row(i));
                kd_row_topk(
                    z,
                    idx.as_slice().unwrap_or(&[]),
                    p.as_slice().unwrap_or(&[]),
                    residual[i],
                    label,
                    t,
                    alpha,
                    scale,
                    g,
                )
            }
            TeacherTargets::Sampled { index } => {
                let d = index.row(i);
                kd_row_sampled(z, d.as_slice().unwrap_or(&[]), label, t, alpha, scale, g)
            }
        }
    }
}

/// Forward and backward for `idx` rows; gradients are scaled by `scale` (1 / batch rows).
fn step_chunk(mlp: &Mlp, inputs: ArrayView2<f32>, idx: &[usize], tg: &Targets, scale: f32, ws: &mut Workspace) {
    let m = idx.len();
    ws.rows = m;
    ws.loss = 0.0;
    if m == 0 {
        return;
    }
    gather_scaled(inputs, idx, &mlp.shift, &mlp.scale, &mut ws.x);
    let last = mlp.layers.len() - 1;
    for (l, layer) in mlp.layers.iter().enumerate() {
        let (before, after) = ws.acts.split_at_mut(l);
        let out = &mut after[0];
        let input = if l == 0 { ws.x.slice(s![..m, ..]) } else { before[l - 1].slice(s![..m, ..]) };
        let mut z = out.slice_mut(s![..m, ..]);
        general_mat_mul(1.0, &input, &layer.w, 0.0, &mut z);
        if l < last {
            Zip::from(z.rows_mut()).for_each(|mut row| {
                Zip::from(&mut row).and(&layer.b).for_each(|v, &b| *v = (*v + b).max(0.0));
            });
        } else {
            z += &layer.b;
        }
    }
    // Loss gradient at the logits.
    let k = mlp.num_classes();
    let logits = &ws.acts[last];
    let dl = &mut ws.delta[last];
    for (r, &i) in idx.iter().enumerate() {
        let z = logits.row(r);
        let mut g = dl.row_mut(r);
        g.fill(0.0);
        let (z, g) = (z.as_slice().unwrap_or(&[]), g.as_slice_mut().unwrap_or(&mut []));
        if z.len() != k || g.len() != k {
            continue;
        }
        ws.loss += tg.row(i, z, scale, g);
    }
    // Backward.
    for l in (0..=last).rev() {
        let layer = &mlp.layers[l];
        let (dbefore, dafter) = ws.delta.split_at_mut(l);
        let d = dafter[0].slice(s![..m, ..]);
        let input = if l == 0 { ws.x.slice(s![..m, ..]) } else { ws.acts[l - 1].slice(s![..m, ..]) };
        general_mat_mul(1.0, &input.t(), &d, 0.0, &mut ws.gw[l]);
        ws.gb[l].fill(0.0);
        for row in d.rows() {
            ws.gb[l] += &row;
        }
        if l > 0 {
            let mut prev = dbefore[l - 1].slice_mut(s![..m, ..]);
            general_mat_mul(1.0, &d, &layer.w.t(), 0.0, &mut prev);
            Zip::from(&mut prev).and(ws.acts[l - 1].slice(s![..m, ..])).for_each(|g, &a| {
                if a <= 0.0 {
                    *g = 0.0;
                }
            });
        }
    }
}

/// Where the rows come from.
#[derive(Debug, Clone, Copy)]
pub enum TrainSource<'a> {
    /// Every row in memory (loaded, filtered and joined by the caller): the fastest.
    Memory(&'a TeacherOutputs),
    /// Streamed from the dataset, holding at most `window_rows` rows at a time: each epoch reads the
    /// dataset's blocks ([`STREAM_BLOCK_ROWS`] rows) in a shuffled order, fills a window, shuffles its
    /// rows and trains on them. Rows whose label is in `exclude_labels` are skipped as they are read.
    Stream {
        /// The dataset (inputs stored).
        labels: &'a SoftLabels,
        /// Rows held in memory at once (rounded to whole batches).
        window_rows: usize,
    },
}

/// Rows per block read when streaming.
pub const STREAM_BLOCK_ROWS: usize = 4096;

/// How a dataset's rows reach the trainer under `settings.memory_budget_mib`: `None` to load them
/// whole (they fit), else the window (rows) to stream them in.
pub fn stream_window(m: &Manifest, settings: &TrainSettings) -> Option<usize> {
    let budget = settings.memory_budget_mib.saturating_mul(1 << 20);
    let per_row = bytes_per_row(m);
    if m.rows.saturating_mul(per_row) <= budget {
        return None;
    }
    // The window takes 3/4 of the budget; decoding, the targets and the model take the rest.
    Some(((budget / 4 * 3 / per_row) as usize).max(settings.batch_size))
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

/// What a student learns from.
#[derive(Debug, Clone, Copy)]
pub struct TrainData<'a> {
    /// The rows.
    pub source: TrainSource<'a>,
    /// K.
    pub num_classes: usize,
    /// The temperature the labels were made with (the default distillation temperature).
    pub temperature: f32,
    /// Where the data came from, named in errors.
    pub origin: &'a Path,
}

/// The hard labels as class indices, checked against K.
fn label_indices(data: &TeacherOutputs, num_classes: usize, origin: &Path) -> Result<Vec<Option<usize>>> {
    data.labels
        .iter()
        .zip(&data.ids)
        .map(|(l, id)| match *l {
            Some(y) if y < 0 || y as usize >= num_classes => {
                Err(Error::dataset(origin, format!("column 'label', id {id}: label {y} is outside [0, {num_classes})")))
            }
            Some(y) => Ok(Some(y as usize)),
            None => Ok(None),
        })
        .collect()
}

/// The teacher's side of the loss at `t` for `data`'s rows.
fn teacher_targets(data: &TeacherOutputs, num_classes: usize, t: f32) -> TeacherTargets<'_> {
    match &data.sparse {
        None => {
            let n = data.ids.len();
            let mut soft = Array2::<f32>::zeros((n, num_classes));
            let mut log_soft = Array2::<f32>::zeros((n, num_classes));
            Zip::from(soft.rows_mut()).and(log_soft.rows_mut()).and(data.logits.rows()).par_for_each(
                |mut p, mut lp, z| {
                    let z = z.to_vec();
                    if let (Some(p), Some(lp)) = (p.as_slice_mut(), lp.as_slice_mut()) {
                        softmax_t(&z, t, p);
                        log_softmax_t(&z, t, lp);
                    }
                },
            );
            TeacherTargets::Dense { soft, log_soft }
        }
        Some(Sparse::TopK { index, logit, logsumexp_t }) => {
            let tt = f64::from(t);
            let p =
                Array2::from_shape_fn(logit.raw_dim(), |(i, j)| (f64::from(logit[[i, j]]) / tt - logsumexp_t[i]).exp());
            let residual = p.rows().into_iter().map(|r| (1.0 - r.sum()).max(0.0)).collect();
            TeacherTargets::TopK { index, p, residual }
        }
        Some(Sparse::Sampled { index }) => TeacherTargets::Sampled { index },
    }
}

/// The model, optimizer state and workspaces between steps.
struct Run<'s> {
    settings: &'s TrainSettings,
    mlp: Mlp,
    state: Vec<[ndarray::ArrayD<f32>; 4]>,
    spaces: Vec<Workspace>,
    workers: usize,
    batch: usize,
    global_step: u64,
    total_steps: u64,
    warmup: u64,
}

/// Per-epoch running totals.
#[derive(Default)]
struct EpochTotals {
    loss: f64,
    steps: usize,
    lr: f32,
}

impl Run<'_> {
    /// One optimizer step per `batch` rows of `order` (indices into `inputs` and `targets`).
    fn steps(
        &mut self,
        inputs: ArrayView2<f32>,
        targets: &Targets,
        order: &[usize],
        epoch: usize,
        totals: &mut EpochTotals,
        progress: &dyn Progress,
    ) -> Result<()> {
        let (settings, workers) = (self.settings, self.workers);
        for idx in order.chunks(self.batch) {
            let scale = 1.0 / idx.len() as f32;
            let chunk = idx.len().div_ceil(workers);
            let mlp = &self.mlp;
            self.spaces.par_iter_mut().enumerate().for_each(|(w, ws)| {
                let lo = (w * chunk).min(idx.len());
                let hi = ((w + 1) * chunk).min(idx.len());
                step_chunk(mlp, inputs, &idx[lo..hi], targets, scale, ws);
            });
            let (first, rest) = self.spaces.split_at_mut(1);
            let acc = &mut first[0];
            let loss: f64 = (acc.loss + rest.iter().map(|w| w.loss).sum::<f64>()) / idx.len() as f64;
            totals.steps += 1;
            if !loss.is_finite() {
                progress.end();
                return Err(Error::Diverged { epoch, step: totals.steps, loss: loss as f32 });
            }
            totals.loss += loss;
            for other in rest.iter().filter(|w| w.rows > 0) {
                for l in 0..self.mlp.layers.len() {
                    Zip::from(&mut acc.gw[l]).and(&other.gw[l]).par_for_each(|a, &b| *a += b);
                    acc.gb[l] += &other.gb[l];
                }
            }
            if let Some(max_norm) = settings.clip_norm {
                let sq: f64 = acc
                    .gw
                    .iter()
                    .map(|g| g.par_iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
                    .sum::<f64>()
                    + acc.gb.iter().map(|g| g.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()).sum::<f64>();
                let norm = sq.sqrt() as f32;
                if norm > max_norm {
                    let c = max_norm / norm;
                    acc.gw.iter_mut().for_each(|g| g.par_mapv_inplace(|v| v * c));
                    acc.gb.iter_mut().for_each(|g| g.mapv_inplace(|v| v * c));
                }
            }
            self.global_step += 1;
            totals.lr =
                settings.schedule.rate(settings.optimizer.lr(), self.global_step - 1, self.total_steps, self.warmup);
            for (l, layer) in self.mlp.layers.iter_mut().enumerate() {
                let [mw, vw, mb, vb] = &mut self.state[l];
                settings.optimizer.update(
                    layer.w.view_mut().into_dyn(),
                    acc.gw[l].view().into_dyn(),
                    mw.view_mut(),
                    vw.view_mut(),
                    self.global_step,
                    totals.lr,
                );
                settings.optimizer.update(
                    layer.b.view_mut().into_dyn(),
                    acc.gb[l].view().into_dyn(),
                    mb.view_mut(),
                    vb.view_mut(),
                    self.global_step,
                    totals.lr,
                );
            }
            progress.advance(1);
        }
        Ok(())
    }
}

/// Trains a student. With `checkpoint`, the training state is saved after every epoch and, when
/// `checkpoint.resume` is set and a matching checkpoint exists, training continues from it.
pub fn train(
    train_data: &TrainData,
    settings: &TrainSettings,
    val: Option<&ValSet>,
    checkpoint: Option<&Checkpointing>,
    progress: &dyn Progress,
) -> Result<TrainedStudent> {
    let TrainData { source, num_classes, temperature: label_temperature, origin } = *train_data;
    settings.validate()?;
    let t = settings.temperature.unwrap_or(label_temperature);
    let sparse = match source {
        TrainSource::Memory(d) => d.sparse.is_some(),
        TrainSource::Stream { labels, .. } => !labels.manifest().form.is_dense(),
    };
    if sparse && t != label_temperature {
        return Err(Error::Config(format!(
            "{} stores sparse labels made at T = {label_temperature}: their normaliser (top-k) or draws (sampled) \
             hold only at that temperature, so --temperature {t} cannot be used",
            origin.display()
        )));
    }
    // What the whole data holds: rows, whether any has a label, the input statistics. Streamed data is
    // scanned once in file order (the same sums, in the same order, as for data in memory).
    let mut stats = InputStats::default();
    let (n, width, any_label, memory_targets, blocks, window) = match source {
        TrainSource::Memory(d) => {
            stats.add(d.inputs.view());
            let labels = label_indices(d, num_classes, origin)?;
            let any = labels.iter().any(Option::is_some);
            (d.len(), d.inputs.ncols(), any, Some((labels, teacher_targets(d, num_classes, t))), Vec::new(), 0)
        }
        TrainSource::Stream { labels, window_rows } => {
            let m = labels.manifest();
            if !m.input.stored {
                return Err(Error::dataset(labels.dir(), "was made with --no-inputs: streaming needs stored inputs"));
            }
            let blocks = labels.blocks(STREAM_BLOCK_ROWS)?;
            let window = window_rows.max(settings.batch_size).div_ceil(settings.batch_size) * settings.batch_size;
            let (mut n, mut any) = (0usize, false);
            progress.begin("scan", Some(m.rows));
            for w in labels.windows(&blocks, window, &settings.exclude_labels) {
                let w = w?;
                any |= label_indices(&w, num_classes, origin)?.iter().any(Option::is_some);
                n += w.len();
                stats.add(w.inputs.view());
                progress.advance(w.len() as u64);
            }
            progress.end();
            tracing::info!(rows = n, window, blocks = blocks.len(), "streaming the training data");
            (n, m.input.width, any, None, blocks, window)
        }
    };
    if n == 0 {
        return Err(Error::dataset(origin, "no rows to train on"));
    }
    if settings.alpha < 1.0 && !any_label {
        return Err(Error::Config(format!(
            "--alpha {} needs hard labels, but {} has none; use --alpha 1",
            settings.alpha,
            origin.display()
        )));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut dims = vec![width];
    dims.extend(&settings.hidden);
    dims.push(num_classes);
    let workers = rayon::current_num_threads().max(1);
    let resumed = match checkpoint {
        Some(cp) if cp.resume => checkpoint::load(cp, settings, workers, &dims)?,
        _ => None,
    };
    let (mlp, state, epochs_done, global_step, mut log) = match resumed {
        Some(st) => {
            rng.set_word_pos(st.rng_word_pos);
            tracing::info!(epochs_done = st.epochs_done, "resuming from checkpoint");
            (st.mlp, st.optim, st.epochs_done, st.global_step, st.log)
        }
        None => {
            let mut mlp = Mlp::init(&dims, &mut rng);
            stats.apply(&mut mlp);
            let state = mlp
                .layers
                .iter()
                .map(|l| {
                    let w = ndarray::ArrayD::zeros(l.w.shape());
                    let b = ndarray::ArrayD::zeros(l.b.shape());
                    [w.clone(), w, b.clone(), b]
                })
                .collect();
            (mlp, state, 0, 0u64, Vec::with_capacity(settings.epochs))
        }
    };

    let batch = settings.batch_size.min(n);
    let cap = batch.div_ceil(workers);
    let steps_per_epoch = n.div_ceil(batch) as u64;
    let spaces: Vec<Workspace> = (0..workers).map(|_| Workspace::new(&mlp, cap)).collect();
    let mut run = Run {
        settings,
        mlp,
        state,
        spaces,
        workers,
        batch,
        global_step,
        total_steps: steps_per_epoch * settings.epochs as u64,
        warmup: (f64::from(settings.warmup_epochs) * steps_per_epoch as f64).round() as u64,
    };
    let mut order: Vec<usize> = Vec::with_capacity(if window > 0 { window } else { n });
    progress.begin("train", Some(run.total_steps));
    progress.advance(run.global_step);
    for epoch in epochs_done + 1..=settings.epochs {
        let start = Instant::now();
        let mut totals = EpochTotals::default();
        // Each epoch's order depends only on the RNG's position, which a checkpoint records.
        match (source, &memory_targets) {
            (TrainSource::Memory(data), Some((labels, teacher))) => {
                let targets = Targets { teacher, labels, t, alpha: settings.alpha };
                order.clear();
                order.extend(0..n);
                order.shuffle(&mut rng);
                run.steps(data.inputs.view(), &targets, &order, epoch, &mut totals, progress)?;
            }
            (TrainSource::Stream { labels: set, .. }, _) => {
                let mut shuffled = blocks.clone();
                shuffled.shuffle(&mut rng);
                for w in set.windows(&shuffled, window, &settings.exclude_labels) {
                    let w = w?;
                    let labels = label_indices(&w, num_classes, origin)?;
                    let teacher = teacher_targets(&w, num_classes, t);
                    let targets = Targets { teacher: &teacher, labels: &labels, t, alpha: settings.alpha };
                    order.clear();
                    order.extend(0..w.len());
                    order.shuffle(&mut rng);
                    run.steps(w.inputs.view(), &targets, &order, epoch, &mut totals, progress)?;
                }
            }
            (TrainSource::Memory(_), None) => return Err(Error::Internal("targets not computed".into())),
        }
        let val_errors = val.map(|v| v.errors(&run.mlp));
        let entry = EpochLog {
            epoch,
            train_loss: totals.loss / totals.steps.max(1) as f64,
            lr: totals.lr,
            val_accuracy: val.zip(val_errors).map(|(v, e)| 1.0 - e as f64 / v.labels.len().max(1) as f64),
            val_errors,
            seconds: start.elapsed().as_secs_f64(),
        };
        tracing::info!(epoch, loss = entry.train_loss, val_errors = ?entry.val_errors, seconds = entry.seconds, "epoch done");
        progress.message(&match entry.val_errors {
            Some(e) => format!("epoch {epoch}: loss {:.4}, val errors {e}", entry.train_loss),
            None => format!("epoch {epoch}: loss {:.4}", entry.train_loss),
        });
        log.push(entry);
        if let Some(cp) = checkpoint {
            let st = checkpoint::State {
                mlp: run.mlp.clone(),
                optim: run.state.clone(),
                epochs_done: epoch,
                global_step: run.global_step,
                rng_word_pos: rng.get_word_pos(),
                log: log.clone(),
            };
            checkpoint::save(cp, &st, settings, workers)?;
        }
    }
    progress.end();
    Ok(TrainedStudent { mlp: run.mlp, log, temperature: t, rows: n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    /// Finite-difference check of the whole network's gradient (loss summed over a small batch).
    #[test]
    fn backprop_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, d, k) = (6, 5, 4);
        let mut mlp = Mlp::init(&[d, 7, 6, k], &mut rng);
        let inputs = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
        let teacher = Array2::from_shape_fn((n, k), |(i, j)| ((i * 5 + j * 13) % 17) as f32 - 8.0);
        mlp.fit_input_scaling(inputs.view());
        let t = 3.0;
        let mut soft = Array2::zeros((n, k));
        let mut log_soft = Array2::zeros((n, k));
        for i in 0..n {
            let z = teacher.row(i).to_vec();
            softmax_t(&z, t, soft.row_mut(i).as_slice_mut().unwrap());
            log_softmax_t(&z, t, log_soft.row_mut(i).as_slice_mut().unwrap());
        }
        let labels: Vec<Option<usize>> = (0..n).map(|i| if i == 2 { None } else { Some(i % k) }).collect();
        let teacher = TeacherTargets::Dense { soft, log_soft };
        let tg = Targets { teacher: &teacher, labels: &labels, t, alpha: 0.6 };
        let idx: Vec<usize> = (0..n).collect();
        let loss_of = |m: &Mlp| {
            let mut ws = Workspace::new(m, n);
            step_chunk(m, inputs.view(), &idx, &tg, 1.0, &mut ws);
            ws.loss
        };
        let mut ws = Workspace::new(&mlp, n);
        step_chunk(&mlp, inputs.view(), &idx, &tg, 1.0, &mut ws);
        let h = 1e-2f32;
        for l in 0..mlp.layers.len() {
            for &(i, j) in &[(0usize, 0usize), (1, 2), (3, 1)] {
                let mut p = mlp.clone();
                p.layers[l].w[[i, j]] += h;
                let mut m = mlp.clone();
                m.layers[l].w[[i, j]] -= h;
                let fd = (loss_of(&p) - loss_of(&m)) / (2.0 * f64::from(h));
                let g = f64::from(ws.gw[l][[i, j]]);
                assert!((fd - g).abs() < 5e-3 * (1.0 + fd.abs()), "layer {l} w[{i},{j}]: fd {fd} vs {g}");
            }
            let mut p = mlp.clone();
            p.layers[l].b[1] += h;
            let mut m = mlp.clone();
            m.layers[l].b[1] -= h;
            let fd = (loss_of(&p) - loss_of(&m)) / (2.0 * f64::from(h));
            let g = f64::from(ws.gb[l][1]);
            assert!((fd - g).abs() < 5e-3 * (1.0 + fd.abs()), "layer {l} b[1]: fd {fd} vs {g}");
        }
    }

    #[test]
    fn same_seed_same_weights_and_nan_is_reported() {
        let n = 64;
        let inputs = Array2::from_shape_fn((n, 8), |(i, j)| ((i * 3 + j) % 7) as f32);
        let logits = Array2::from_shape_fn((n, 3), |(i, j)| if (i % 3) == j { 5.0 } else { -1.0 });
        let data = TeacherOutputs {
            ids: (0..n as u64).collect(),
            labels: (0..n).map(|i| Some((i % 3) as i64)).collect(),
            inputs,
            logits,
            sparse: None,
            views: None,
        };
        let s = TrainSettings { hidden: vec![16], epochs: 2, batch_size: 16, ..Default::default() };
        let td = TrainData {
            source: TrainSource::Memory(&data),
            num_classes: 3,
            temperature: 2.0,
            origin: Path::new("mem"),
        };
        let a = train(&td, &s, None, None, &NoProgress).unwrap();
        let b = train(&td, &s, None, None, &NoProgress).unwrap();
        assert_eq!(a.mlp, b.mlp);
        assert!(a.log[1].train_loss < a.log[0].train_loss, "{:?}", a.log);

        let huge =
            TrainSettings { optimizer: Optimizer::Sgd(crate::student::Sgd { lr: 1e30, ..Default::default() }), ..s };
        match train(&td, &huge, None, None, &NoProgress) {
            Err(Error::Diverged { epoch, step, .. }) => assert!(epoch >= 1 && step >= 1),
            other => panic!("expected divergence, got {other:?}"),
        }
    }
}
