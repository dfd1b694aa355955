//! Training checkpoints: after every epoch the full training state (weights, optimizer moments, RNG
//! position, log) is written atomically to the student folder, so `train --resume` continues to exactly
//! the weights an uninterrupted run reaches (same seed, same settings, same thread count).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;

use super::EpochLog;
use crate::config::TrainSettings;
use crate::error::{Error, Result};
use crate::student::io::{read_tensors, student_from_tensors, take_tensor, write_tensors};
use crate::student::{Student, Tensor};
use crate::util::write_atomic;
use crate::util::{read_bounded, read_text_bounded, sha256_hex, Links};

/// The weights and optimizer state.
pub const WEIGHTS: &str = "checkpoint.safetensors";
/// The checkpoint's description, written after the weights (it names their sha256).
pub const INFO: &str = "checkpoint.json";

/// Where checkpoints go and whether to continue from one.
#[derive(Debug, Clone)]
pub struct Checkpointing {
    /// The student folder.
    pub dir: PathBuf,
    /// Continue from the checkpoint in `dir` if there is one.
    pub resume: bool,
    /// Identity of the training data (sha256 of the labels' manifest): a checkpoint made from other data
    /// is refused.
    pub labels_sha256: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Info {
    format: String,
    epochs_done: usize,
    global_step: u64,
    /// ChaCha8 word position after the epoch (u128 as a decimal string).
    rng_word_pos: String,
    settings: TrainSettings,
    labels_sha256: String,
    threads: usize,
    dims: Vec<usize>,
    log: Vec<EpochLog>,
    weights_sha256: String,
}

/// Everything needed to continue training, as loaded.
#[derive(Debug)]
pub(crate) struct State {
    pub student: Box<dyn Student>,
    /// Per parameter (in [`Student::params_mut`] order): the optimizer's [m, v].
    pub optim: Vec<[ArrayD<f32>; 2]>,
    pub epochs_done: usize,
    pub global_step: u64,
    pub rng_word_pos: u128,
    pub log: Vec<EpochLog>,
    /// The best epoch's weights so far (`--keep best`).
    pub best: Option<Box<dyn Student>>,
    /// The tensors left after the student's: the objective's auxiliary parameters (`aux.*`).
    pub rest: crate::student::io::Tensors,
}

/// The training state after an epoch, borrowed for saving.
pub(crate) struct Snapshot<'a> {
    pub student: &'a dyn Student,
    pub optim: &'a [[ArrayD<f32>; 2]],
    pub epochs_done: usize,
    pub global_step: u64,
    pub rng_word_pos: u128,
    pub log: &'a [EpochLog],
    pub best: Option<&'a dyn Student>,
    /// The objective's auxiliary parameters and their optimizer moments.
    pub aux: &'a [ArrayD<f32>],
    pub aux_optim: &'a [[ArrayD<f32>; 2]],
}

const MOMENTS: [&str; 2] = ["m", "v"];
/// The prefix of the best epoch's tensors in a checkpoint (`--keep best`).
const BEST: &str = "best.";
const AUX: &str = "aux.";

pub(crate) fn save(cp: &Checkpointing, state: &Snapshot, settings: &TrainSettings, threads: usize) -> Result<()> {
    std::fs::create_dir_all(&cp.dir).map_err(|e| Error::io(&cp.dir, e))?;
    let mut all: Vec<Tensor> = state.student.tensors();
    if let Some(best) = state.best {
        all.extend(best.tensors().into_iter().map(|(name, shape, v)| (format!("{BEST}{name}"), shape, v)));
    }
    for (p, moments) in state.optim.iter().enumerate() {
        for (name, a) in MOMENTS.iter().zip(moments) {
            all.push((format!("optim.{p}.{name}"), a.shape().to_vec(), a.iter().copied().collect()));
        }
    }
    for (p, (a, moments)) in state.aux.iter().zip(state.aux_optim).enumerate() {
        all.push((format!("{AUX}{p}"), a.shape().to_vec(), a.iter().copied().collect()));
        for (name, m) in MOMENTS.iter().zip(moments) {
            all.push((format!("{AUX}{p}.{name}"), m.shape().to_vec(), m.iter().copied().collect()));
        }
    }
    let bytes = write_tensors(&all, &BTreeMap::new());
    let wpath = cp.dir.join(WEIGHTS);
    write_atomic(&wpath, &bytes)?;
    let info = Info {
        format: FORMAT.into(),
        epochs_done: state.epochs_done,
        global_step: state.global_step,
        rng_word_pos: state.rng_word_pos.to_string(),
        settings: settings.clone(),
        labels_sha256: cp.labels_sha256.clone(),
        threads,
        dims: state.student.dims(),
        log: state.log.to_vec(),
        weights_sha256: sha256_hex(&bytes),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&cp.dir.join(INFO), &json)
}

/// The checkpoint format: version 2 keeps one [m, v] pair per parameter (version 1, per layer, is refused).
const FORMAT: &str = "softlabel-checkpoint-2";

/// Loads the checkpoint in `cp.dir`; `None` when there is none. Refuses one made with other settings,
/// data or thread count.
pub(crate) fn load(
    cp: &Checkpointing,
    settings: &TrainSettings,
    threads: usize,
    arch: &crate::student::Arch,
) -> Result<Option<State>> {
    let dims = &arch.dims;
    let ipath = cp.dir.join(INFO);
    if !ipath.exists() {
        return Ok(None);
    }
    let text = read_text_bounded(&ipath, Links::Refuse, crate::student::io::MAX_INFO_BYTES, "a checkpoint.json")?;
    let info: Info =
        serde_json::from_str(&text).map_err(|e| Error::dataset(&ipath, format!("invalid checkpoint: {e}")))?;
    let refuse = |what: &str| {
        Err(Error::dataset(
            &ipath,
            format!("cannot resume: the {what} differs from the checkpoint's; train without --resume to start again"),
        ))
    };
    if info.format != FORMAT {
        return refuse(&format!("checkpoint format ({} here, {FORMAT} now)", info.format));
    }
    if info.labels_sha256 != cp.labels_sha256 {
        return refuse("soft-label dataset (manifest sha256)");
    }
    if info.settings != *settings {
        return refuse("training settings");
    }
    if info.threads != threads {
        return refuse(&format!("thread count ({threads} now, {} then)", info.threads));
    }
    if info.dims != *dims {
        return refuse("network shape");
    }
    let wpath = cp.dir.join(WEIGHTS);
    // Optimizer moments make a checkpoint three times the weights.
    let max = 3 * crate::student::io::MAX_WEIGHTS_BYTES;
    let bytes = read_bounded(&wpath, Links::Refuse, max, "a checkpoint's weights file")?;
    if sha256_hex(&bytes) != info.weights_sha256 {
        return Err(Error::dataset(&wpath, "sha256 differs from checkpoint.json's: the checkpoint is damaged"));
    }
    let mut t = read_tensors(&bytes, &wpath)?;
    let mut best_tensors: crate::student::io::Tensors = BTreeMap::new();
    t.retain(|name, v| match name.strip_prefix(BEST) {
        Some(rest) => {
            best_tensors.insert(rest.to_string(), std::mem::take(v));
            false
        }
        None => true,
    });
    let best: Option<Box<dyn Student>> = match best_tensors.is_empty() {
        true => None,
        false => Some(student_from_tensors(&mut best_tensors, arch, &wpath)?),
    };
    let mut student: Box<dyn Student> = student_from_tensors(&mut t, arch, &wpath)?;
    let mut optim = Vec::new();
    for (p, param) in student.params_mut().iter().enumerate() {
        let shape = param.shape().to_vec();
        let mut pair = MOMENTS.iter().map(|name| {
            let v = take_tensor(&mut t, &format!("optim.{p}.{name}"), &shape, &wpath)?;
            ArrayD::from_shape_vec(shape.clone(), v).map_err(|e| Error::Internal(e.to_string()))
        });
        let (Some(m), Some(v)) = (pair.next(), pair.next()) else {
            return Err(Error::Internal("moments".into()));
        };
        optim.push([m?, v?]);
    }
    let rng_word_pos =
        info.rng_word_pos.parse().map_err(|_| Error::dataset(&ipath, "rng_word_pos is not an integer"))?;
    Ok(Some(State {
        student,
        optim,
        epochs_done: info.epochs_done,
        global_step: info.global_step,
        rng_word_pos,
        log: info.log,
        best,
        rest: t,
    }))
}

/// An optimizer's [m, v] for one parameter.
type Moments = [ArrayD<f32>; 2];

/// The auxiliary parameters shaped like `fresh` and their moments, from a checkpoint's `rest`.
pub(crate) fn take_aux(
    rest: &mut crate::student::io::Tensors,
    fresh: &[ArrayD<f32>],
    dir: &Path,
) -> Result<(Vec<ArrayD<f32>>, Vec<Moments>)> {
    let wpath = dir.join(WEIGHTS);
    let mut take = |name: String, shape: &[usize]| -> Result<ArrayD<f32>> {
        let v = take_tensor(rest, &name, shape, &wpath)?;
        ArrayD::from_shape_vec(shape.to_vec(), v).map_err(|e| Error::Internal(e.to_string()))
    };
    let mut aux = Vec::with_capacity(fresh.len());
    let mut moments = Vec::with_capacity(fresh.len());
    for (p, a) in fresh.iter().enumerate() {
        aux.push(take(format!("{AUX}{p}"), a.shape())?);
        moments.push([take(format!("{AUX}{p}.m"), a.shape())?, take(format!("{AUX}{p}.v"), a.shape())?]);
    }
    Ok((aux, moments))
}

/// Removes the checkpoint files (after the finished student is saved).
pub fn remove(dir: &Path) -> Result<()> {
    for name in [INFO, WEIGHTS] {
        let p = dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}
