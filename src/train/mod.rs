//! Training a student from a soft-label dataset: the rows ([`rows`]), the loss ([`crate::distill`]), the
//! data-parallel step (`step`), checkpoints ([`checkpoint`]), validation rows ([`val`]) and the whole
//! job from labels to a saved student folder ([`run()`]), used by `softlabel train` and by pipelines alike.

pub mod checkpoint;
pub mod rows;
pub mod run;
mod step;
pub mod val;

use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::student::io::EpochLog;
pub use checkpoint::Checkpointing;
pub use rows::{RowSource, Window};
pub use run::{run, Resume, TrainJob};
pub use val::ValSet;

use crate::config::train::EmbedSettings;
use crate::config::{Keep, TrainSettings};
use crate::distill::{Kd, Loss, Objective};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::TeacherOutputs;
#[cfg(test)]
use crate::student::Mlp;
use crate::student::{Arch, EmbedSpec, InputStats, Student, StudentKind};
use step::{EpochTotals, Trainer};

/// The result of [`train`].
#[derive(Debug)]
pub struct TrainedStudent {
    /// The network.
    pub student: Box<dyn Student>,
    /// Per-epoch log.
    pub log: Vec<EpochLog>,
    /// The temperature used.
    pub temperature: f32,
    /// Rows trained on per epoch.
    pub rows: usize,
    /// The epoch whose weights `student` holds, when not the last trained (`--keep best`).
    pub saved_epoch: Option<usize>,
    /// Whether early stopping ended training before `settings.epochs`.
    pub stopped_early: bool,
    /// Whether a finished student made by the same job was found and kept instead of training.
    pub reused: bool,
}

/// The epoch with the best validation score in `log` (the earliest on ties) and that score.
pub fn best_epoch(log: &[EpochLog]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for l in log {
        if let Some(score) = l.val_accuracy.or(l.val_agreement) {
            if best.is_none_or(|(_, b)| score > b) {
                best = Some((l.epoch, score));
            }
        }
    }
    best
}

/// What a student learns from.
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    /// The rows.
    pub rows: &'a dyn RowSource,
    /// K.
    pub num_classes: usize,
    /// The temperature the labels were made with (the default distillation temperature).
    pub temperature: f32,
    /// Where the data came from, named in errors.
    pub origin: &'a Path,
    /// The per-row input shape the labels record (the image of a cnn student).
    pub input_shape: &'a [usize],
    /// The stored teacher features of `TrainSettings::relations`, in their order.
    pub features: &'a [crate::store::FeatureTable],
}

/// Refuses a student whose training would not fit in this machine's memory: its weights, the
/// optimizer's two moments, one gradient per worker, and each worker's activations for its share of a
/// batch, in f32 (`--memory-budget` is the rows' budget; the student comes on top). Checked with
/// overflow-safe arithmetic before anything is allocated.
fn check_student_memory(arch: &Arch, workers: usize, settings: &TrainSettings) -> Result<()> {
    let dims = &arch.dims;
    let linear = |io: &[usize]| (io[0] as u64).checked_mul(io[1] as u64).and_then(|w| w.checked_add(io[1] as u64));
    // Per row: the values each layer keeps (outputs and their gradients), and for a cnn each block's
    // input, im2col matrix (twice: values and gradient), output and pooled output.
    let (params, units) = match arch.kind {
        StudentKind::Mlp => {
            let params = dims.windows(2).try_fold(0u64, |a, io| a.checked_add(linear(io)?));
            (params, Some(dims.iter().map(|&d| d as u64).sum::<u64>()))
        }
        StudentKind::Cnn => {
            let [c, mut h, mut w] = arch.image3()?;
            let (mut cin, mut params, mut units) = (c as u64, Some(0u64), Some(0u64));
            for &cout in &arch.channels {
                let cout = cout as u64;
                let hw = (h * w) as u64;
                params = params.and_then(|p| p.checked_add(cin.checked_mul(9)?.checked_mul(cout)?.checked_add(cout)?));
                let outputs = if arch.batch_norm { 4 * cout } else { 3 * cout };
                units = units.and_then(|u| u.checked_add(hw.checked_mul(cin.checked_mul(19)?.checked_add(outputs)?)?));
                (cin, h, w) = (cout, h / 2, w / 2);
            }
            let features = if dims.len() == 2 { cin } else { cin * (h * w) as u64 };
            let mut fc = vec![features as usize];
            fc.extend(&dims[1..]);
            let params = fc.windows(2).try_fold(params.unwrap_or(u64::MAX), |a, io| a.checked_add(linear(io)?));
            (params, units.and_then(|u| u.checked_add(fc.iter().map(|&d| d as u64).sum::<u64>())))
        }
        StudentKind::Embed => {
            // The table, then per row: its ids and, with convolutions, the embedded sequence and its
            // gradient and per block the im2col matrix (twice), the output (twice) and the pooled output.
            let e = arch.embed_spec()?;
            let (mut len, mut cin) = (dims[0] as u64, e.dim as u64);
            let mut params = (e.vocab as u64).checked_mul(cin);
            let mut units =
                Some(len).and_then(|l| l.checked_add(if arch.channels.is_empty() { cin } else { 2 * l * cin }));
            for &cout in &arch.channels {
                let cout = cout as u64;
                let k = crate::student::embed::KERNEL as u64;
                params = params.and_then(|p| p.checked_add(cin.checked_mul(k)?.checked_mul(cout)?.checked_add(cout)?));
                units =
                    units.and_then(|u| u.checked_add(len.checked_mul(cin.checked_mul(2 * k)?.checked_add(3 * cout)?)?));
                (cin, len) = (cout, len / 2);
            }
            let mut fc = vec![cin as usize];
            fc.extend(&dims[1..]);
            let params = fc.windows(2).try_fold(params.unwrap_or(u64::MAX), |a, io| a.checked_add(linear(io)?));
            (params, units.and_then(|u| u.checked_add(fc.iter().map(|&d| d as u64).sum::<u64>())))
        }
    };
    let rows = settings.batch_size.div_ceil(workers) as u64;
    let bytes = params
        .and_then(|p| p.checked_mul(3 + workers as u64))
        .and_then(|b| b.checked_add(units?.checked_mul(rows)?.checked_mul(2 * workers as u64)?))
        .and_then(|b| b.checked_mul(4));
    let memory = crate::util::physical_memory();
    match bytes {
        Some(b) if b <= memory => Ok(()),
        _ => Err(Error::Config(format!(
            "the student {} has {} parameters; training it needs {} (weights, optimizer moments, a gradient per \
             worker, activations), more than this machine's {} of memory",
            arch.describe(),
            params.map_or("more than 2^64".into(), |p| p.to_string()),
            bytes.map_or("more than 2^64 bytes".into(), crate::util::human_bytes),
            crate::util::human_bytes(memory),
        ))),
    }
}

/// The embedding table of an embed student: token ids must be integers >= 0; the vocabulary is
/// `--vocab` or the largest id + 1.
fn embed_spec(e: &EmbedSettings, stats: &InputStats, origin: &Path) -> Result<EmbedSpec> {
    if let Some(v) = stats.fractional() {
        return Err(Error::dataset(
            origin,
            format!("an embed student reads token ids, but the input holds {v}, which is not an integer"),
        ));
    }
    let (lo, hi) = stats.range().unwrap_or((0.0, 0.0));
    if lo < 0.0 {
        return Err(Error::dataset(origin, format!("an embed student reads token ids >= 0, but the input holds {lo}")));
    }
    let vocab = match e.vocab {
        Some(v) => {
            if f64::from(hi) >= v as f64 {
                tracing::warn!(largest_id = hi, vocab = v, "ids >= --vocab are masked, as padding is");
            }
            v
        }
        None => {
            if f64::from(hi) >= crate::config::limits::EMBED_VOCAB as f64 {
                return Err(Error::dataset(
                    origin,
                    format!(
                        "the largest token id is {hi}; an embedding table holds at most {} rows (--vocab N masks                          the ids above)",
                        crate::config::limits::EMBED_VOCAB
                    ),
                ));
            }
            hi as usize + 1
        }
    };
    Ok(EmbedSpec { vocab, dim: e.dim, pad_id: e.pad_id, bag: e.bag })
}

/// Trains a student. With `checkpoint`, the training state is saved after every epoch and, when
/// `checkpoint.resume` is set and a matching checkpoint exists, training continues from it.
pub fn train(
    data: &TrainData,
    settings: &TrainSettings,
    val: Option<&ValSet>,
    checkpoint: Option<&Checkpointing>,
    progress: &dyn Progress,
) -> Result<TrainedStudent> {
    let TrainData { rows, num_classes, temperature: label_temperature, origin, input_shape, features } = *data;
    if features.len() != settings.relations.len() {
        return Err(Error::Internal(format!(
            "{} relation terms, {} teacher feature tables",
            settings.relations.len(),
            features.len()
        )));
    }
    let t = settings.temperature.unwrap_or(label_temperature);
    if rows.sparse() && t != label_temperature {
        return Err(Error::Config(format!(
            "{} stores sparse labels made at T = {label_temperature}: their normaliser (top-k) or draws (sampled) \
             hold only at that temperature, so --temperature {t} cannot be used",
            origin.display()
        )));
    }
    // What the whole data holds. Streamed data is scanned once in file order (the same sums, in the
    // same order, as for data in memory).
    let scan = rows.scan(num_classes, origin, progress)?;
    let n = scan.rows;
    if n == 0 {
        return Err(Error::dataset(origin, "no rows to train on"));
    }
    if (settings.keep == Keep::Best || settings.early_stop.is_some()) && val.is_none_or(ValSet::is_empty) {
        return Err(Error::Config(
            "--keep best and --early-stop choose epochs by a validation metric: pass --val-fraction F (rows held \
             out of the labels) or --val DATA"
                .into(),
        ));
    }
    if settings.alpha < 1.0 && !scan.any_label {
        return Err(Error::Config(format!(
            "--alpha {} needs hard labels, but {} has none; use --alpha 1",
            settings.alpha,
            origin.display()
        )));
    }

    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut dims = vec![rows.width()];
    dims.extend(&settings.hidden);
    dims.push(num_classes);
    let arch = Arch {
        kind: settings.student,
        dims: dims.clone(),
        channels: settings.channels.clone(),
        batch_norm: settings.batch_norm,
        image: match (settings.student, settings.image) {
            (StudentKind::Cnn, Some(image)) => image.to_vec(),
            (StudentKind::Cnn, None) => input_shape.to_vec(),
            _ => Vec::new(),
        },
        embed: match &settings.embed {
            Some(e) => Some(embed_spec(e, &scan.stats, origin)?),
            None => None,
        },
    };
    if arch.kind == StudentKind::Cnn {
        let [c, h, w] = arch.image3()?;
        if c.checked_mul(h).and_then(|v| v.checked_mul(w)) != Some(rows.width()) {
            return Err(Error::dataset(
                origin,
                format!("image {:?} does not hold the rows' {} values", arch.image, rows.width()),
            ));
        }
    }
    let workers = rayon::current_num_threads().max(1);
    check_student_memory(&arch, workers, settings)?;
    let resumed = match checkpoint {
        Some(cp) if cp.resume => checkpoint::load(cp, settings, workers, &arch)?,
        _ => None,
    };
    let mut rest = None;
    let (student, state, epochs_done, global_step, mut log, mut best) = match resumed {
        Some(st) => {
            rng.set_word_pos(st.rng_word_pos);
            tracing::info!(epochs_done = st.epochs_done, "resuming from checkpoint");
            rest = Some(st.rest);
            (st.student, st.optim, st.epochs_done, st.global_step, st.log, st.best)
        }
        None => {
            let mut student = arch.init(&mut rng)?;
            if student.scales_input() {
                scan.stats.apply(student.scaling_mut());
            }
            let state = Trainer::fresh_state(student.as_mut());
            (student, state, 0, 0u64, Vec::with_capacity(settings.epochs.min(1024)), None)
        }
    };

    let batch = settings.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(batch) as u64;
    let mut trainer = Trainer::new(settings, student, state, global_step, batch, steps_per_epoch);
    let objective: Box<dyn Objective> = match settings.loss {
        None => Box::new(Kd { t, alpha: settings.alpha, num_classes, origin: origin.to_path_buf() }),
        Some(divergence) => Box::new(crate::distill::LogitLoss {
            divergence,
            t,
            alpha: settings.alpha,
            num_classes,
            origin: origin.to_path_buf(),
        }),
    };
    let mut term_names = Vec::new();
    let objective: Box<dyn Objective + '_> = if settings.relations.is_empty() {
        objective
    } else {
        let terms = settings.relations.iter().zip(features.iter()).map(|(r, f)| (r.relation, r.layer, f)).collect();
        let with = crate::distill::WithRelations::new(objective, terms, trainer.student.as_ref())?;
        tracing::info!(terms = ?with.describe(), "feature and relation terms");
        term_names = with.term_names();
        Box::new(with)
    };
    // FitNets' regressors: fresh from the seed, or the checkpoint's.
    let fresh = objective.aux_params(settings.seed);
    match (rest.as_mut(), checkpoint) {
        (Some(rest), Some(cp)) if !fresh.is_empty() => {
            let (aux, moments) = checkpoint::take_aux(rest, &fresh, &cp.dir)?;
            trainer.set_aux(aux, Some(moments));
        }
        _ => trainer.set_aux(fresh, None),
    }
    let resident = match rows.resident() {
        Some(d) => Some((d, objective.prepare(d)?)),
        None => None,
    };
    let mut order: Vec<usize> = Vec::with_capacity(rows.window_rows().min(n));
    progress.begin("train", Some(trainer.total_steps()));
    progress.advance(trainer.global_step);
    let mut stopped_early = false;
    for epoch in epochs_done + 1..=settings.epochs {
        // Early stopping, checked before the epoch so a resumed run that had already stopped stays stopped.
        if let (Some(patience), Some((b, _))) = (settings.early_stop, best_epoch(&log)) {
            if epoch - 1 - b >= patience {
                tracing::info!(best_epoch = b, patience, "validation metric stopped improving: early stop");
                stopped_early = true;
                break;
            }
        }
        let start = Instant::now();
        let mut totals = EpochTotals::default();
        // Each epoch's order depends only on the RNG's position, which a checkpoint records.
        rows.epoch(&mut rng, &mut |window, rng| {
            let (read, read_loss);
            let (data, loss): (&TeacherOutputs, &dyn Loss) = match window {
                Window::Resident => match &resident {
                    Some((d, l)) => (d, l.as_ref()),
                    None => return Err(Error::Internal("no resident rows".into())),
                },
                Window::Read(d) => {
                    read = *d;
                    read_loss = objective.prepare(&read)?;
                    (&read, read_loss.as_ref())
                }
            };
            order.clear();
            order.extend(0..data.len());
            order.shuffle(rng);
            trainer.steps(data.inputs.view(), loss, &order, epoch, &mut totals, progress)
        })?;
        let v = val.map(|v| v.measure(trainer.student.as_ref())).unwrap_or_default();
        let entry = EpochLog {
            epoch,
            train_loss: totals.loss / totals.steps.max(1) as f64,
            relation_loss: (!settings.relations.is_empty())
                .then(|| totals.terms.iter().sum::<f64>() / totals.steps.max(1) as f64),
            term_losses: (!term_names.is_empty()).then(|| {
                let per_step = |i: usize| totals.terms.get(i).copied().unwrap_or(0.0) / totals.steps.max(1) as f64;
                term_names.iter().enumerate().map(|(i, name)| (name.clone(), per_step(i))).collect()
            }),
            lr: totals.lr,
            val_accuracy: v.accuracy,
            val_errors: v.errors,
            val_agreement: v.agreement,
            val_kl: v.kl,
            seconds: start.elapsed().as_secs_f64(),
        };
        tracing::info!(epoch, loss = entry.train_loss, val_errors = ?entry.val_errors, val_agreement = ?entry.val_agreement, seconds = entry.seconds, "epoch done");
        let mut msg = format!("epoch {epoch}: loss {:.4}", entry.train_loss);
        if let Some(e) = entry.val_errors {
            msg += &format!(", val errors {e}");
        }
        if let Some(a) = entry.val_agreement {
            msg += &format!(", val agreement {:.2}%", 100.0 * a);
        }
        progress.message(&msg);
        log.push(entry);
        if settings.keep == Keep::Best && best_epoch(&log).is_some_and(|(b, _)| b == epoch) {
            best = Some(trainer.student.boxed());
        }
        if let Some(cp) = checkpoint {
            let st = checkpoint::Snapshot {
                student: trainer.student.as_ref(),
                optim: &trainer.state,
                epochs_done: epoch,
                global_step: trainer.global_step,
                rng_word_pos: rng.get_word_pos(),
                log: &log,
                best: best.as_deref(),
                aux: &trainer.aux,
                aux_optim: &trainer.aux_state,
            };
            checkpoint::save(cp, &st, settings, workers)?;
        }
    }
    progress.end();
    let last = log.last().map_or(0, |l| l.epoch);
    let (student, saved_epoch) = match (settings.keep, best, best_epoch(&log)) {
        (Keep::Best, Some(b), Some((epoch, _))) if epoch != last => (b, Some(epoch)),
        _ => (trainer.student, None),
    };
    Ok(TrainedStudent { student, log, temperature: t, rows: n, saved_epoch, stopped_early, reused: false })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ndarray::{s, Array2};

    use super::*;
    use crate::config::{Origin, TrainConfig};
    use crate::optim::{Optimizer, Sgd};
    use crate::progress::NoProgress;
    use crate::store::Outputs;

    fn rows(n: usize, d: usize, k: usize) -> TeacherOutputs {
        TeacherOutputs {
            ids: (0..n as u64).collect(),
            labels: (0..n).map(|i| if i == 2 { None } else { Some((i % k) as i64) }).collect(),
            inputs: Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0),
            outputs: Outputs::Dense {
                logits: Array2::from_shape_fn((n, k), |(i, j)| ((i * 5 + j * 13) % 17) as f32 - 8.0),
            },
            views: None,
            positions: None,
        }
    }

    /// The loss of `mlp` over all rows (forward, the loss, and the backward pass into `ws`).
    fn loss_and_grads(mlp: &Mlp, data: &TeacherOutputs, loss: &dyn Loss, ws: &mut crate::student::Workspace) -> f64 {
        let idx: Vec<usize> = (0..data.len()).collect();
        mlp.forward_train(data.inputs.view(), &idx, ws);
        let m = idx.len();
        ws.loss = loss.eval(ws.logits.slice(s![..m, ..]), &idx, 1.0, ws.grad_logits.slice_mut(s![..m, ..]));
        mlp.backward(ws);
        ws.loss
    }

    /// Finite-difference check of the whole network's gradient (loss summed over a small batch).
    #[test]
    fn backprop_matches_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (n, d, k) = (6, 5, 4);
        let data = rows(n, d, k);
        let mut mlp = Mlp::init(&[d, 7, 6, k], &mut rng);
        mlp.scaling.fit(data.inputs.view());
        let kd = Kd { t: 3.0, alpha: 0.6, num_classes: k, origin: PathBuf::from("mem") };
        let loss = kd.prepare(&data).unwrap();
        let mut ws = mlp.workspace(n);
        loss_and_grads(&mlp, &data, loss.as_ref(), &mut ws);
        let loss_of = |m: &Mlp| loss_and_grads(m, &data, loss.as_ref(), &mut m.workspace(n));
        let h = 1e-2f32;
        for l in 0..mlp.layers.len() {
            for &(i, j) in &[(0usize, 0usize), (1, 2), (3, 1)] {
                let (mut p, mut m) = (mlp.clone(), mlp.clone());
                p.layers[l].w[[i, j]] += h;
                m.layers[l].w[[i, j]] -= h;
                let fd = (loss_of(&p) - loss_of(&m)) / (2.0 * f64::from(h));
                let g = f64::from(ws.grads[2 * l][[i, j]]);
                assert!((fd - g).abs() < 5e-3 * (1.0 + fd.abs()), "layer {l} w[{i},{j}]: fd {fd} vs {g}");
            }
            let (mut p, mut m) = (mlp.clone(), mlp.clone());
            p.layers[l].b[1] += h;
            m.layers[l].b[1] -= h;
            let fd = (loss_of(&p) - loss_of(&m)) / (2.0 * f64::from(h));
            let g = f64::from(ws.grads[2 * l + 1][[1]]);
            assert!((fd - g).abs() < 5e-3 * (1.0 + fd.abs()), "layer {l} b[1]: fd {fd} vs {g}");
        }
    }

    /// A row-wise loss declared batch-level: the trainer's batch path must give the same weights.
    struct WholeBatch<'a>(Box<dyn Loss + 'a>);

    impl Loss for WholeBatch<'_> {
        fn row_wise(&self) -> bool {
            false
        }
        fn eval(
            &self,
            logits: ndarray::ArrayView2<f32>,
            rows: &[usize],
            scale: f32,
            grad: ndarray::ArrayViewMut2<f32>,
        ) -> f64 {
            self.0.eval(logits, rows, scale, grad)
        }
    }

    #[test]
    fn a_batch_level_loss_reaches_the_same_weights_as_row_wise() {
        let data = rows(40, 5, 3);
        let settings = TrainConfig { hidden: vec![8], epochs: 1, batch_size: 16, ..Default::default() }
            .validate(&Origin::Flags)
            .unwrap();
        let kd = Kd { t: 2.0, alpha: 0.7, num_classes: 3, origin: PathBuf::from("mem") };
        let order: Vec<usize> = (0..40).collect();
        let run = |batch_level: bool| {
            crate::util::with_threads(3, || {
                let mut mlp: Box<dyn Student> = Box::new(Mlp::init(&[5, 8, 3], &mut ChaCha8Rng::seed_from_u64(1)));
                let state = Trainer::fresh_state(mlp.as_mut());
                let mut t = Trainer::new(&settings, mlp, state, 0, 16, 3);
                let loss = kd.prepare(&data).unwrap();
                let loss: Box<dyn Loss> = if batch_level { Box::new(WholeBatch(loss)) } else { loss };
                let mut totals = EpochTotals::default();
                t.steps(data.inputs.view(), loss.as_ref(), &order, 1, &mut totals, &NoProgress).unwrap();
                (t.student.tensors(), totals.loss)
            })
            .unwrap()
        };
        let (row_wise, batch) = (run(false), run(true));
        assert_eq!(row_wise.0, batch.0);
        assert!((row_wise.1 - batch.1).abs() < 1e-12 * row_wise.1.abs().max(1.0), "{} vs {}", row_wise.1, batch.1);
    }

    #[test]
    fn same_seed_same_weights_and_nan_is_reported() {
        let n = 64;
        let data = TeacherOutputs {
            ids: (0..n as u64).collect(),
            labels: (0..n).map(|i| Some((i % 3) as i64)).collect(),
            inputs: Array2::from_shape_fn((n, 8), |(i, j)| ((i * 3 + j) % 7) as f32),
            outputs: Outputs::Dense {
                logits: Array2::from_shape_fn((n, 3), |(i, j)| if (i % 3) == j { 5.0 } else { -1.0 }),
            },
            views: None,
            positions: None,
        };
        let rows = rows::MemoryRows::new(data);
        let config = TrainConfig { hidden: vec![16], epochs: 2, batch_size: 16, ..Default::default() };
        let s = config.validate(&Origin::Flags).unwrap();
        let td = TrainData {
            rows: &rows,
            num_classes: 3,
            temperature: 2.0,
            origin: Path::new("mem"),
            input_shape: &[8],
            features: &[],
        };
        let a = train(&td, &s, None, None, &NoProgress).unwrap();
        let b = train(&td, &s, None, None, &NoProgress).unwrap();
        assert_eq!(a.student.tensors(), b.student.tensors());
        assert!(a.log[1].train_loss < a.log[0].train_loss, "{:?}", a.log);

        let huge = TrainSettings { optimizer: Optimizer::Sgd(Sgd { lr: 1e30, ..Default::default() }), ..s };
        match train(&td, &huge, None, None, &NoProgress) {
            Err(Error::Diverged { epoch, step, .. }) => assert!(epoch >= 1 && step >= 1),
            other => panic!("expected divergence, got {other:?}"),
        }
    }
}
