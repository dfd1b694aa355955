//! Training checkpoints: after every epoch the full training state (weights, optimizer moments, RNG
//! position, log) is written atomically to the student folder, so `train --resume` continues to exactly
//! the weights an uninterrupted run reaches (same seed, same settings, same thread count).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;

use super::io::{mlp_from_tensors, read_tensors, take_tensor, tensors, write_tensors, Tensor};
use super::mlp::Mlp;
use super::train::{EpochLog, TrainSettings};
use crate::dataset::{sha256_file, sha256_hex};
use crate::error::{Error, Result};
use crate::store::write_atomic;

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

/// Everything needed to continue training.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub mlp: Mlp,
    /// Per layer: [weight m, weight v, bias m, bias v].
    pub optim: Vec<[ArrayD<f32>; 4]>,
    pub epochs_done: usize,
    pub global_step: u64,
    pub rng_word_pos: u128,
    pub log: Vec<EpochLog>,
}

const MOMENTS: [&str; 4] = ["weight_m", "weight_v", "bias_m", "bias_v"];

pub(crate) fn save(cp: &Checkpointing, state: &State, settings: &TrainSettings, threads: usize) -> Result<()> {
    std::fs::create_dir_all(&cp.dir).map_err(|e| Error::io(&cp.dir, e))?;
    let mut all: Vec<Tensor> = tensors(&state.mlp);
    for (l, moments) in state.optim.iter().enumerate() {
        for (name, a) in MOMENTS.iter().zip(moments) {
            all.push((format!("optim.{l}.{name}"), a.shape().to_vec(), a.iter().copied().collect()));
        }
    }
    let bytes = write_tensors(&all, &BTreeMap::new());
    let wpath = cp.dir.join(WEIGHTS);
    write_atomic(&wpath, &bytes)?;
    let info = Info {
        format: "softlabel-checkpoint".into(),
        epochs_done: state.epochs_done,
        global_step: state.global_step,
        rng_word_pos: state.rng_word_pos.to_string(),
        settings: settings.clone(),
        labels_sha256: cp.labels_sha256.clone(),
        threads,
        dims: state.mlp.dims(),
        log: state.log.clone(),
        weights_sha256: sha256_hex(&bytes),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&cp.dir.join(INFO), &json)
}

/// Loads the checkpoint in `cp.dir`; `None` when there is none. Refuses one made with other settings,
/// data or thread count.
pub(crate) fn load(
    cp: &Checkpointing,
    settings: &TrainSettings,
    threads: usize,
    dims: &[usize],
) -> Result<Option<State>> {
    let ipath = cp.dir.join(INFO);
    if !ipath.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&ipath).map_err(|e| Error::io(&ipath, e))?;
    let info: Info =
        serde_json::from_str(&text).map_err(|e| Error::dataset(&ipath, format!("invalid checkpoint: {e}")))?;
    let refuse = |what: &str| {
        Err(Error::dataset(
            &ipath,
            format!("cannot resume: the {what} differs from the checkpoint's; train without --resume to start again"),
        ))
    };
    if info.labels_sha256 != cp.labels_sha256 {
        return refuse("soft-label dataset (manifest sha256)");
    }
    if info.settings != *settings {
        return refuse("training settings");
    }
    if info.threads != threads {
        return refuse(&format!("thread count ({threads} now, {} then)", info.threads));
    }
    if info.dims != dims {
        return refuse("network shape");
    }
    let wpath = cp.dir.join(WEIGHTS);
    if sha256_file(&wpath)? != info.weights_sha256 {
        return Err(Error::dataset(&wpath, "sha256 differs from checkpoint.json's: the checkpoint is damaged"));
    }
    let bytes = std::fs::read(&wpath).map_err(|e| Error::io(&wpath, e))?;
    let mut t = read_tensors(&bytes, &wpath)?;
    let mlp = mlp_from_tensors(&mut t, dims, &wpath)?;
    let mut optim = Vec::new();
    for (l, layer) in mlp.layers.iter().enumerate() {
        let shapes =
            [layer.w.shape().to_vec(), layer.w.shape().to_vec(), layer.b.shape().to_vec(), layer.b.shape().to_vec()];
        let mut moments: Vec<ArrayD<f32>> = Vec::new();
        for (name, shape) in MOMENTS.iter().zip(shapes) {
            let v = take_tensor(&mut t, &format!("optim.{l}.{name}"), &shape, &wpath)?;
            moments.push(ArrayD::from_shape_vec(shape, v).map_err(|e| Error::Internal(e.to_string()))?);
        }
        let [a, b, c, d]: [ArrayD<f32>; 4] = moments.try_into().map_err(|_| Error::Internal("moments".into()))?;
        optim.push([a, b, c, d]);
    }
    let rng_word_pos =
        info.rng_word_pos.parse().map_err(|_| Error::dataset(&ipath, "rng_word_pos is not an integer"))?;
    Ok(Some(State {
        mlp,
        optim,
        epochs_done: info.epochs_done,
        global_step: info.global_step,
        rng_word_pos,
        log: info.log,
    }))
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
