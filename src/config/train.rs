//! `train` settings: [`TrainConfig`] (flags and `[student]` keys, defaults in its `Default`) and the
//! validated [`TrainSettings`] a student is trained with (recorded in `student.json`).

use serde::{Deserialize, Serialize};

use super::{check_limit, check_temperature, limits, Origin, Validated};
use crate::error::Result;
use crate::optim::{Adam, LrSchedule, Optimizer, Sgd};
use crate::store::Holdout;
pub use crate::student::StudentKind;

/// The optimizer's name in pipeline files and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// Adam (AdamW with weight decay).
    Adam,
}

/// Which epoch's weights a finished training run saves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The last epoch's.
    #[default]
    Last,
    /// The epoch with the best validation metric (accuracy on labelled validation rows, else agreement
    /// with the teacher); the earliest such epoch on ties.
    Best,
}

/// How a student is trained, as the user writes it (`train` flags, a pipeline's `[student]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", default)]
pub struct TrainConfig {
    /// The student network: `mlp`, `cnn` or `embed` (in a pipeline also `kind = ...`).
    #[serde(alias = "kind")]
    pub student: StudentKind,
    /// Output channels of each convolution block (`cnn`: 16, 32 when empty; `embed`: empty for a bag).
    pub channels: Vec<usize>,
    /// Batch normalisation after each convolution (`cnn`).
    pub batch_norm: bool,
    /// The input's image layout, "HxW" or "CxHxW" (`cnn`; default: the labels' recorded input shape).
    pub image: Option<String>,
    /// Values per embedding (`embed`).
    pub embed_dim: usize,
    /// Rows of the embedding table (`embed`; `None`: the largest id in the training inputs + 1).
    pub vocab: Option<usize>,
    /// The padding id, masked (`embed`).
    pub pad_id: Option<u32>,
    /// Pooling of the bag (`embed` without `channels`).
    pub bag: crate::student::Bag,
    /// Sequence datasets: the student reads the tokens within W positions of each position (a tagger:
    /// t-W..=t+W; a language model: t-W..=t, causal).
    pub window: usize,
    /// Hidden layer sizes.
    pub hidden: Vec<usize>,
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Learning rate (`None`: 1e-3 for Adam, 0.1 for SGD).
    pub lr: Option<f32>,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay (decoupled for Adam, L2 for SGD).
    pub weight_decay: f32,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Linear warm-up, in epochs (may be fractional).
    pub warmup_epochs: f32,
    /// Weight of the distillation term in [0, 1] (1: soft targets only, 0: hard labels only).
    pub alpha: f32,
    /// The logit loss: kd (Hinton et al.), dkd, jsd, tvd or reverse-kl.
    pub loss: LossName,
    /// DKD's weight of the target-class part.
    pub dkd_alpha: f32,
    /// DKD's weight of the non-target part.
    pub dkd_beta: f32,
    /// RKD against stored teacher features, one term per entry: `FEATURE[:DIST,ANGLE][@LAYER]` (a
    /// pipeline may give one string or a list, as for the three below).
    #[serde(deserialize_with = "one_or_many")]
    pub rkd: Vec<String>,
    /// Similarity-preserving KD against stored teacher features: `FEATURE[:WEIGHT][@LAYER]`.
    #[serde(deserialize_with = "one_or_many")]
    pub sp: Vec<String>,
    /// FitNets hints against stored teacher features: `FEATURE[:WEIGHT][@LAYER]`.
    #[serde(deserialize_with = "one_or_many")]
    pub hint: Vec<String>,
    /// Attention transfer from stored teacher conv maps: `FEATURE[:WEIGHT][@blockN]`.
    #[serde(deserialize_with = "one_or_many")]
    pub at: Vec<String>,
    /// Distillation temperature (`None`: the one the labels were made with).
    pub temperature: Option<f32>,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Clip the gradient's global L2 norm to this value.
    pub clip_norm: Option<f32>,
    /// Training threads (0: all cores).
    pub threads: usize,
    /// Hard labels whose rows are left out of the transfer set.
    pub exclude_labels: Vec<i64>,
    /// Memory for the training rows, in MiB: a dataset that needs more is streamed.
    pub memory_budget_mib: u64,
    /// Hold out this share of the labels' ids as validation rows (a seeded split by id, in (0, 1)).
    pub val_fraction: Option<f64>,
    /// The seed of that split (separate from `seed`, so students trained with other seeds validate on the
    /// same rows).
    pub val_seed: u64,
    /// Which epoch's weights to save.
    pub keep: Keep,
    /// Stop when the validation metric has not improved for this many epochs.
    pub early_stop: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            student: StudentKind::Mlp,
            channels: Vec::new(),
            batch_norm: false,
            image: None,
            embed_dim: 32,
            vocab: None,
            pad_id: None,
            bag: crate::student::Bag::Mean,
            window: 2,
            hidden: vec![800, 800],
            epochs: 20,
            batch_size: 128,
            optimizer: OptimizerKind::Adam,
            lr: None,
            momentum: 0.9,
            weight_decay: 0.0,
            schedule: LrSchedule::Cosine,
            warmup_epochs: 0.0,
            alpha: 0.9,
            loss: LossName::Kd,
            // mdistiller's CIFAR-100 settings for DKD.
            dkd_alpha: 1.0,
            dkd_beta: 8.0,
            rkd: Vec::new(),
            sp: Vec::new(),
            hint: Vec::new(),
            at: Vec::new(),
            temperature: None,
            seed: 0,
            clip_norm: None,
            threads: 0,
            exclude_labels: Vec::new(),
            memory_budget_mib: 2048,
            val_fraction: None,
            val_seed: 0,
            keep: Keep::Last,
            early_stop: None,
        }
    }
}

/// Validated training settings; the only way to make them is [`TrainConfig::validate`] (or reading a
/// `student.json` / checkpoint that recorded them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// The student network.
    #[serde(default, skip_serializing_if = "is_mlp")]
    pub student: StudentKind,
    /// Output channels of each convolution block (`cnn`, `embed`; empty for `mlp` and a bag).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<usize>,
    /// Batch normalisation after each convolution (`cnn`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch_norm: bool,
    /// The input image `[C, H, W]` as given (`cnn`; `None`: the labels' input shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[usize; 3]>,
    /// The embedding table (`embed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<EmbedSettings>,
    /// Sequence datasets: tokens read on each side of a position (see [`TrainConfig::window`]).
    pub window: usize,
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
    /// The divergence replacing KD's KL (`None`: Hinton et al.'s KD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<crate::distill::Divergence>,
    /// Relation-based terms on the student's embedding, each against a stored teacher feature.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<RelationTerm>,
    /// Distillation temperature; `None`: the one the labels were made with.
    pub temperature: Option<f32>,
    /// Seed for initialisation and shuffling.
    pub seed: u64,
    /// Clip the gradient's global L2 norm to this value.
    pub clip_norm: Option<f32>,
    /// Hard labels whose rows are left out of the transfer set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_labels: Vec<i64>,
    /// Memory for the training rows, in MiB (see [`crate::train::rows`]).
    #[serde(default = "default_budget")]
    pub memory_budget_mib: u64,
    /// The validation split held out of the labels (`--val-fraction`, `--val-seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<Holdout>,
    /// Which epoch's weights are saved.
    #[serde(default, skip_serializing_if = "is_last")]
    pub keep: Keep,
    /// Patience of early stopping, in epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<usize>,
    /// Made by [`TrainConfig::validate`].
    #[serde(skip)]
    pub(crate) valid: Validated,
}

/// A relation-based term: the teacher feature it compares with and the term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelationTerm {
    /// The stored teacher feature (its name in the teacher, `feature.NAME` in the labels).
    pub feature: String,
    /// The term and its weights.
    #[serde(flatten)]
    pub relation: crate::distill::Relation,
    /// The student layer it reads (`@LAYER`); `None`: the embedding (attention transfer: the
    /// convolution block nearest the teacher map's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::student::Tap>,
}

/// One string or a list of them (a pipeline's `hint = "F"` or `hint = ["F@1", "G@2"]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    // null (a config written when these held one optional string) is none.
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// Parses `FEATURE[:W1[,W2...]][@LAYER]` (`weights` numbers after the last `:`; without them,
/// `defaults`; the layer as [`crate::student::Tap::parse`] reads it).
fn feature_term(
    text: &str,
    defaults: &[f32],
    origin: &Origin,
    key: &str,
) -> Result<(String, Vec<f32>, Option<crate::student::Tap>)> {
    let (rest, layer) = match text.rsplit_once('@') {
        Some((rest, layer)) => match crate::student::Tap::parse(layer) {
            Some(tap) => (rest, Some(tap)),
            None => {
                return Err(origin.error(
                    key,
                    format!("'{text}': layer '{layer}' is not embedding, N (hidden layer N, from 1) or blockN"),
                ))
            }
        },
        None => (text, None),
    };
    let parsed = rest.rsplit_once(':').and_then(|(name, w)| {
        let ws: Option<Vec<f32>> = w.split(',').map(|x| x.trim().parse::<f32>().ok()).collect();
        ws.map(|ws| (name.to_string(), ws))
    });
    let (name, weights) = parsed.unwrap_or_else(|| (rest.to_string(), defaults.to_vec()));
    if name.is_empty() {
        return Err(origin.error(key, format!("'{text}' names no feature (FEATURE[:WEIGHTS][@LAYER])")));
    }
    if weights.len() != defaults.len() || weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(origin
            .error(key, format!("'{text}': give {} finite weights >= 0 after the feature's name", defaults.len())));
    }
    Ok((name, weights, layer))
}

/// The logit loss by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossName {
    /// Hinton et al.'s KD (KL to the softened teacher).
    #[default]
    Kd,
    /// Decoupled KD (Zhao et al. 2022).
    Dkd,
    /// Jensen-Shannon divergence.
    Jsd,
    /// Total variation distance.
    Tvd,
    /// KL(student || teacher).
    ReverseKl,
}

/// The embedding table as configured: its vocabulary may still come from the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedSettings {
    /// Values per embedding.
    pub dim: usize,
    /// Rows of the table (`None`: the largest id in the training inputs + 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab: Option<usize>,
    /// The masked padding id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<u32>,
    /// The bag's pooling.
    #[serde(default)]
    pub bag: crate::student::Bag,
}

/// Default convolution blocks of a cnn student.
pub const CNN_CHANNELS: [usize; 2] = [16, 32];

fn is_mlp(k: &StudentKind) -> bool {
    *k == StudentKind::Mlp
}

fn is_last(k: &Keep) -> bool {
    *k == Keep::Last
}

fn default_budget() -> u64 {
    TrainConfig::default().memory_budget_mib
}

impl TrainConfig {
    /// Checks every setting that needs no data and resolves the optimizer; errors name the setting as
    /// `origin` says the user wrote it.
    pub fn validate(&self, origin: &Origin) -> Result<TrainSettings> {
        let bad = |field: &str, m: String| Err(origin.error(field, m));
        if !(self.alpha.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            return bad("alpha", format!("must be in [0, 1], got {}", self.alpha));
        }
        if let Some(t) = self.temperature {
            check_temperature(t, origin, "temperature")?;
        }
        if self.hidden.contains(&0) {
            return bad("hidden", "sizes must be > 0".into());
        }
        check_limit(origin, "window", self.window, crate::store::sequence::MAX_WINDOW)?;
        check_limit(origin, "hidden", self.hidden.len(), limits::HIDDEN_LAYERS).map_err(|_| {
            origin.error("hidden", format!("has {} layers; at most {}", self.hidden.len(), limits::HIDDEN_LAYERS))
        })?;
        if let Some(&h) = self.hidden.iter().find(|&&h| h > limits::HIDDEN_UNITS) {
            return bad("hidden", format!("has a layer of {h} units; at most {}", limits::HIDDEN_UNITS));
        }
        let channels = match self.student {
            StudentKind::Mlp => {
                if !self.channels.is_empty() {
                    return bad("channels", "is for cnn and embed students; this one is an mlp".into());
                }
                Vec::new()
            }
            StudentKind::Cnn if self.channels.is_empty() => CNN_CHANNELS.to_vec(),
            _ => self.channels.clone(),
        };
        if channels.contains(&0) {
            return bad("channels", "needs blocks of > 0 channels".into());
        }
        check_limit(origin, "channels", channels.len(), limits::CONV_BLOCKS)?;
        if let Some(&c) = channels.iter().find(|&&c| c > limits::CONV_CHANNELS) {
            return bad("channels", format!("has a block of {c} channels; at most {}", limits::CONV_CHANNELS));
        }
        if self.batch_norm && self.student != StudentKind::Cnn {
            return bad("batch_norm", "is for cnn students".into());
        }
        let image = match (&self.image, self.student) {
            (None, _) => None,
            (Some(text), StudentKind::Cnn) => {
                Some(crate::augment::parse_image(text).map_err(|e| origin.error("image", e.to_string()))?)
            }
            (Some(_), _) => return bad("image", "is for cnn students".into()),
        };
        let embed = if self.student == StudentKind::Embed {
            if self.embed_dim == 0 || self.embed_dim > limits::EMBED_DIM {
                return bad("embed_dim", format!("must be in 1..={}, got {}", limits::EMBED_DIM, self.embed_dim));
            }
            if let Some(v) = self.vocab {
                if v == 0 || v > limits::EMBED_VOCAB {
                    return bad(
                        "vocab",
                        format!("must be in 1..={} (ids exact in float32), got {v}", limits::EMBED_VOCAB),
                    );
                }
            }
            Some(EmbedSettings { dim: self.embed_dim, vocab: self.vocab, pad_id: self.pad_id, bag: self.bag })
        } else {
            None
        };
        check_limit(origin, "epochs", self.epochs, limits::EPOCHS)?;
        check_limit(origin, "batch_size", self.batch_size, limits::BATCH_ROWS)?;
        check_limit(origin, "threads", self.threads, limits::THREADS)?;
        if self.memory_budget_mib == 0 {
            return bad("memory_budget_mib", "must be > 0 MiB".into());
        }
        if self.epochs == 0 {
            return bad("epochs", "must be > 0".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be > 0".into());
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad("warmup_epochs", format!("must be >= 0, got {}", self.warmup_epochs));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad("clip_norm", format!("must be finite and > 0, got {c}"));
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("weight_decay", format!("must be >= 0, got {}", self.weight_decay));
        }
        let optimizer = match self.optimizer {
            OptimizerKind::Sgd => {
                if !(0.0..1.0).contains(&self.momentum) {
                    return bad("momentum", format!("must be in [0, 1), got {}", self.momentum));
                }
                let d = Sgd::default();
                Optimizer::Sgd(Sgd {
                    lr: self.lr.unwrap_or(d.lr),
                    momentum: self.momentum,
                    weight_decay: self.weight_decay,
                    ..d
                })
            }
            OptimizerKind::Adam => {
                let d = Adam::default();
                Optimizer::Adam(Adam { lr: self.lr.unwrap_or(d.lr), weight_decay: self.weight_decay, ..d })
            }
        };
        if let Some(f) = self.val_fraction {
            if !(f.is_finite() && f > 0.0 && f < 1.0) {
                return bad("val_fraction", format!("must be in (0, 1), got {f}"));
            }
        }
        if let Some(p) = self.early_stop {
            if p == 0 {
                return bad("early_stop", "must be > 0 epochs".into());
            }
            check_limit(origin, "early_stop", p, limits::EPOCHS)?;
        }
        let lr = optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("lr", format!("must be finite and > 0, got {lr}"));
        }
        Ok(TrainSettings {
            student: self.student,
            channels,
            batch_norm: self.batch_norm,
            image,
            embed,
            window: self.window,
            hidden: self.hidden.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer,
            schedule: self.schedule,
            warmup_epochs: self.warmup_epochs,
            alpha: self.alpha,
            loss: match self.loss {
                LossName::Kd => None,
                LossName::Dkd => {
                    for (key, v) in [("dkd_alpha", self.dkd_alpha), ("dkd_beta", self.dkd_beta)] {
                        if !v.is_finite() || v < 0.0 {
                            return Err(origin.error(key, format!("must be finite and >= 0, got {v}")));
                        }
                    }
                    Some(crate::distill::Divergence::Dkd { alpha: self.dkd_alpha, beta: self.dkd_beta })
                }
                LossName::Jsd => Some(crate::distill::Divergence::Jsd),
                LossName::Tvd => Some(crate::distill::Divergence::Tvd),
                LossName::ReverseKl => Some(crate::distill::Divergence::ReverseKl),
            },
            relations: {
                let mut terms = Vec::new();
                use crate::distill::Relation;
                type Make = fn(&[f32]) -> Relation;
                let flags: [(&str, &Vec<String>, &[f32], Make); 4] = [
                    ("rkd", &self.rkd, &[25.0, 50.0], |w| Relation::Rkd { distance: w[0], angle: w[1] }),
                    ("sp", &self.sp, &[3000.0], |w| Relation::Sp { weight: w[0] }),
                    ("hint", &self.hint, &[100.0], |w| Relation::Hint { weight: w[0] }),
                    ("at", &self.at, &[1000.0], |w| Relation::At { weight: w[0] }),
                ];
                for (key, texts, defaults, make) in flags {
                    for text in texts {
                        let (feature, w, layer) = feature_term(text, defaults, origin, key)?;
                        let term = RelationTerm { feature, relation: make(&w), layer };
                        // Each term is logged by its kind, feature and layer: one of each.
                        let same = |t: &RelationTerm| {
                            std::mem::discriminant(&t.relation) == std::mem::discriminant(&term.relation)
                                && t.feature == term.feature
                                && t.layer == term.layer
                        };
                        if terms.iter().any(same) {
                            return Err(origin.error(key, format!("'{text}': the same term is given twice")));
                        }
                        terms.push(term);
                    }
                }
                if !terms.is_empty() && self.student == StudentKind::Mlp && self.hidden.is_empty() {
                    let key = [("rkd", &self.rkd), ("sp", &self.sp), ("hint", &self.hint), ("at", &self.at)]
                        .iter()
                        .find(|(_, v)| !v.is_empty())
                        .map_or("rkd", |(k, _)| *k);
                    return Err(origin.error(
                        key,
                        "needs a student embedding: an MLP with --hidden layers, or a cnn or embed student",
                    ));
                }
                terms
            },
            temperature: self.temperature,
            seed: self.seed,
            clip_norm: self.clip_norm,
            exclude_labels: self.exclude_labels.clone(),
            memory_budget_mib: self.memory_budget_mib,
            holdout: self.val_fraction.map(|fraction| Holdout { fraction, seed: self.val_seed }),
            keep: self.keep,
            early_stop: self.early_stop,
            valid: Validated(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_or_the_pipeline_key() {
        let c = TrainConfig { alpha: 2.0, ..Default::default() };
        let flag = c.validate(&Origin::Flags).unwrap_err().to_string();
        assert!(flag.contains("--alpha must be in [0, 1], got 2"), "{flag}");
        let file = Origin::File { path: "p.toml".into(), section: "student" };
        let key = c.validate(&file).unwrap_err().to_string();
        assert!(key.contains("p.toml: [student] alpha must be in [0, 1]"), "{key}");
        let c = TrainConfig { memory_budget_mib: 0, ..Default::default() };
        assert!(c.validate(&Origin::Flags).unwrap_err().to_string().contains("--memory-budget must be > 0"));
    }

    /// A pipeline gives a feature term as one string or a list (one term each); null (written when
    /// these were one optional string) is none; the same term twice is refused.
    #[test]
    fn feature_terms_are_one_string_or_a_list() {
        let one: TrainConfig = toml::from_str("student = \"cnn\"\nhint = \"f\"").unwrap();
        let many: TrainConfig = toml::from_str("student = \"cnn\"\nat = [\"a@block1\", \"b:10@block2\"]").unwrap();
        assert_eq!(
            (one.hint.clone(), many.at.clone()),
            (vec!["f".to_string()], vec!["a@block1".into(), "b:10@block2".into()])
        );
        let none: TrainConfig = serde_json::from_str(r#"{"hint": null}"#).unwrap();
        assert!(none.hint.is_empty());
        let terms = many.validate(&Origin::Flags).unwrap().relations;
        assert_eq!(terms.len(), 2);
        assert_eq!((terms[1].feature.as_str(), terms[1].layer), ("b", Some(crate::student::Tap::Block(1))));
        assert_eq!(terms[1].relation, crate::distill::Relation::At { weight: 10.0 });
        let twice = TrainConfig { at: vec!["a".into(), "a".into()], student: StudentKind::Cnn, ..Default::default() };
        let err = twice.validate(&Origin::Flags).unwrap_err().to_string();
        assert!(err.contains("'a': the same term is given twice"), "{err}");
    }

    #[test]
    fn the_learning_rate_defaults_per_optimizer() {
        let adam = TrainConfig::default().validate(&Origin::Flags).unwrap();
        assert_eq!(adam.optimizer.lr(), 1e-3);
        let sgd = TrainConfig { optimizer: OptimizerKind::Sgd, ..Default::default() }.validate(&Origin::Flags);
        assert_eq!(sgd.unwrap().optimizer.lr(), 0.1);
    }
}
