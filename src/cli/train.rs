use std::path::PathBuf;

use clap::Args;
use softlabel::config::{Origin, TrainConfig};
use softlabel::store::SoftLabels;
use softlabel::train::{Resume, TrainJob};

use super::enums::{Bag, Keep, LrSchedule, OptimizerKind, StudentKind};
use super::{Bars, DataArgs};

/// Layer sizes separated by commas; empty or `none` for no layers (a cnn then pools globally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes(pub Vec<usize>);

impl std::str::FromStr for Sizes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(Sizes(Vec::new()));
        }
        s.split(',')
            .map(|v| v.trim().parse::<usize>().map_err(|e| format!("{v:?}: {e}")))
            .collect::<Result<_, _>>()
            .map(Sizes)
    }
}

impl std::fmt::Display for Sizes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        write!(f, "{}", self.0.iter().map(usize::to_string).collect::<Vec<_>>().join(","))
    }
}

/// The defaults, from their only home.
fn d() -> TrainConfig {
    TrainConfig::default()
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The soft-label dataset to learn from (made by `softlabel precompute`).
    #[arg(long, value_name = "DIR")]
    pub labels: PathBuf,
    /// Output folder for the student (student.json, student.safetensors, train_log.jsonl).
    #[arg(long, value_name = "STUDENT_DIR")]
    pub out: PathBuf,
    /// Labeled data to report accuracy on after each epoch (Parquet file/folder, or a soft-label dataset).
    #[arg(long, value_name = "PATH")]
    pub val: Option<PathBuf>,
    #[command(flatten)]
    pub val_args: DataArgs,
    /// Hold out this share of the labels' ids as validation rows instead (a seeded split by id, the same
    /// for every student with the same --val-seed; recorded in student.json).
    #[arg(long, value_name = "F")]
    pub val_fraction: Option<f64>,
    /// Seed of the --val-fraction split.
    #[arg(long, default_value_t = d().val_seed, value_name = "S")]
    pub val_seed: u64,
    /// Which epoch's weights to save: the last, or the one with the best validation metric (accuracy
    /// on labelled validation rows, else agreement with the teacher).
    #[arg(long, value_enum, default_value_t = d().keep.into())]
    pub keep: Keep,
    /// Stop when the validation metric has not improved for this many epochs.
    #[arg(long, value_name = "PATIENCE")]
    pub early_stop: Option<usize>,
    /// The student network: an MLP on the flat input; a CNN (3x3 convolution, ReLU and 2x2 max-pool
    /// blocks, then --hidden layers; none: global average pooling) on the labels' image-shaped input; or
    /// an embedding student for integer inputs (token ids, bytes): a bag of embeddings, or with --channels
    /// 1-D convolutions (kernel 5, ReLU, max-pool 2) and a global max-pool, then --hidden layers.
    #[arg(long, value_enum, default_value_t = d().student.into())]
    pub student: StudentKind,
    /// Output channels of each convolution block (cnn: 16,32 when not given; embed: none is a bag).
    #[arg(long, value_delimiter = ',', value_name = "C,C,...")]
    pub channels: Vec<usize>,
    /// Batch normalisation after each convolution of a cnn (statistics over the whole batch in training,
    /// running statistics folded into the convolution for inference and export).
    #[arg(long)]
    pub batch_norm: bool,
    /// The input's image layout for --student cnn, HxW or CxHxW, row-major (default: the labels'
    /// recorded input shape, e.g. 1x28x28).
    #[arg(long, value_name = "CxHxW")]
    pub image: Option<String>,
    /// Values per embedding (--student embed).
    #[arg(long, default_value_t = d().embed_dim, value_name = "D")]
    pub embed_dim: usize,
    /// Rows of the embedding table (--student embed; default: the largest id in the training inputs + 1;
    /// larger ids are masked).
    #[arg(long, value_name = "N")]
    pub vocab: Option<usize>,
    /// The padding id, whose positions are masked (--student embed).
    #[arg(long, value_name = "ID")]
    pub pad_id: Option<u32>,
    /// How a bag of embeddings is pooled (--student embed without --channels).
    #[arg(long, value_enum, default_value_t = d().bag.into())]
    pub bag: Bag,
    /// Sequence datasets: the student reads the tokens within W positions of each stored position
    /// (t-W..=t+W for a tagger; t-W..=t for a language model, whose output must not see the next token).
    #[arg(long, default_value_t = d().window, value_name = "W")]
    pub window: usize,
    /// Hidden layer sizes, separated by commas (`none`: no hidden layer).
    #[arg(long, default_value_t = Sizes(d().hidden), value_name = "N,N,...")]
    pub hidden: Sizes,
    /// Passes over the data.
    #[arg(long, default_value_t = d().epochs, value_name = "N")]
    pub epochs: usize,
    /// Rows per step.
    #[arg(long, default_value_t = d().batch_size, value_name = "N")]
    pub batch_size: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = d().optimizer.into())]
    pub optimizer: OptimizerKind,
    /// Learning rate (default: 1e-3 for adam, 0.1 for sgd).
    #[arg(long, value_name = "X")]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = d().momentum, value_name = "X")]
    pub momentum: f32,
    /// Weight decay (decoupled for adam, L2 for sgd).
    #[arg(long, default_value_t = d().weight_decay, value_name = "X")]
    pub weight_decay: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = d().schedule.into())]
    pub schedule: LrSchedule,
    /// Linear learning-rate warm-up, in epochs.
    #[arg(long, default_value_t = d().warmup_epochs, value_name = "E")]
    pub warmup_epochs: f32,
    /// Weight of the distillation term in [0, 1]: 1 learns only from the teacher, 0 only from labels.
    #[arg(long, default_value_t = d().alpha, value_name = "A")]
    pub alpha: f32,
    /// The logit loss: kd (Hinton et al.'s KL), dkd (decoupled KD, Zhao et al. 2022), jsd
    /// (Jensen-Shannon), tvd (total variation) or reverse-kl (KL(student || teacher)); all but kd need
    /// dense labels, but dkd also takes top-k labels that store the label's logit (schema 2.11).
    #[arg(long, value_enum, default_value_t = d().loss.into())]
    pub loss: super::enums::LossName,
    /// DKD: weight of the target-class part (TCKD).
    #[arg(long, default_value_t = d().dkd_alpha, value_name = "A")]
    pub dkd_alpha: f32,
    /// DKD: weight of the non-target part (NCKD).
    #[arg(long, default_value_t = d().dkd_beta, value_name = "B")]
    pub dkd_beta: f32,
    /// RKD (Park et al. 2019): the student's embedding keeps the distances and angles between a batch's
    /// rows that the stored teacher feature has (`precompute --features`); FEATURE[:DIST,ANGLE],
    /// default weights 25,50.
    #[arg(long, value_name = "FEATURE[:D,A]")]
    pub rkd: Vec<String>,
    /// Similarity-preserving KD (Tung, Mori 2019): the batch's row-normalised Gram matrix of the
    /// student's embedding matches the stored teacher feature's; FEATURE[:WEIGHT], default 3000.
    #[arg(long, value_name = "FEATURE[:W]")]
    pub sp: Vec<String>,
    /// FitNets hint (Romero et al. 2015): a learned linear regressor maps a student layer (default the
    /// embedding; @N: hidden layer N; @blockN: a CNN block's map) to the stored teacher feature's width,
    /// mean squared error; trained with the student, never exported; FEATURE[:WEIGHT][@LAYER], default 100.
    /// --rkd and --sp take @LAYER too. Each of these four flags may be given several times (one term
    /// each, e.g. --at A@block1 --at B@block2).
    #[arg(long, value_name = "FEATURE[:W][@LAYER]")]
    pub hint: Vec<String>,
    /// Attention transfer (Zagoruyko, Komodakis 2017) for a cnn student: the spatial attention map of a
    /// convolution block (@blockN; default: the one nearest the teacher map's size, the teacher's map
    /// resized bilinearly to it) matches the stored teacher conv map's (`precompute --features NAME
    /// --feature-pool attention`, or none); FEATURE[:WEIGHT][@blockN], default 1000.
    #[arg(long, value_name = "FEATURE[:W][@blockN]")]
    pub at: Vec<String>,
    /// Distillation temperature (default: the temperature the labels were made with).
    #[arg(long, short = 'T', value_name = "T", allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Seed for initialisation and shuffling (same seed and threads: same weights).
    #[arg(long, default_value_t = d().seed, value_name = "S")]
    pub seed: u64,
    /// Clip the gradient's global L2 norm.
    #[arg(long, value_name = "X")]
    pub clip_norm: Option<f32>,
    /// Training threads (0: all cores).
    #[arg(long, default_value_t = d().threads, value_name = "N")]
    pub threads: usize,
    /// The source data, for labels made with `precompute --no-inputs`: joined by id (columns as recorded
    /// in the labels' manifest).
    #[arg(long, value_name = "PATH")]
    pub inputs: Option<PathBuf>,
    /// Join --inputs even if its fingerprint differs from the data the labels were made from.
    #[arg(long)]
    pub ignore_fingerprint: bool,
    /// Continue from the checkpoint in --out (written after every epoch) if there is one; the result
    /// equals an uninterrupted run's (same settings and --threads required).
    #[arg(long)]
    pub resume: bool,
    /// Leave the rows with these hard labels out of the transfer set (e.g. 3 for Hinton et al.'s
    /// omitted-3 experiment); the teacher's soft targets still cover every class.
    #[arg(long, value_delimiter = ',', value_name = "Y,...")]
    pub exclude_labels: Vec<i64>,
    /// Memory for the training rows, in MiB: a dataset that needs more (inputs as f32 plus the teacher's
    /// outputs) is streamed from disk in windows of this size, shuffled block-wise, instead of loaded.
    #[arg(long, default_value_t = d().memory_budget_mib, value_name = "MIB")]
    pub memory_budget: u64,
    /// Replace a finished student in --out that was made with other settings or labels (without it, it is
    /// refused). One made with the same settings, labels and softlabel version is always kept as it is.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl TrainArgs {
    /// The flags as the training config (every field set: clap fills in the defaults from [`d`]).
    fn config(&self) -> TrainConfig {
        TrainConfig {
            student: self.student.into(),
            channels: self.channels.clone(),
            batch_norm: self.batch_norm,
            image: self.image.clone(),
            embed_dim: self.embed_dim,
            vocab: self.vocab,
            pad_id: self.pad_id,
            bag: self.bag.into(),
            window: self.window,
            hidden: self.hidden.0.clone(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: self.optimizer.into(),
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            schedule: self.schedule.into(),
            warmup_epochs: self.warmup_epochs,
            alpha: self.alpha,
            loss: self.loss.into(),
            dkd_alpha: self.dkd_alpha,
            dkd_beta: self.dkd_beta,
            rkd: self.rkd.clone(),
            sp: self.sp.clone(),
            hint: self.hint.clone(),
            at: self.at.clone(),
            temperature: self.temperature,
            seed: self.seed,
            clip_norm: self.clip_norm,
            threads: self.threads,
            exclude_labels: self.exclude_labels.clone(),
            memory_budget_mib: self.memory_budget,
            val_fraction: self.val_fraction,
            val_seed: self.val_seed,
            keep: self.keep.into(),
            early_stop: self.early_stop,
        }
    }
}

pub fn run(a: TrainArgs, bars: &Bars) -> anyhow::Result<()> {
    let config = a.config();
    let settings = config.validate(&Origin::Flags)?;
    let labels = SoftLabels::open(&a.labels)?;
    let m = labels.manifest().clone();
    let val = a.val_args.val_set(a.val.as_deref(), &m, (a.window, a.pad_id))?;
    let job = TrainJob {
        labels: &labels,
        settings: &settings,
        out: &a.out,
        val: val.as_ref(),
        join: a.inputs.as_deref().map(|p| (p, a.ignore_fingerprint)),
        resume: if a.resume { Resume::Required } else { Resume::No },
        threads: config.threads,
        overwrite: a.overwrite,
    };
    let (trained, info) = softlabel::train::run(&job, bars)?;
    let secs = info.train_seconds;
    if a.json {
        return super::print_json(&info);
    }
    if trained.reused {
        println!(
            "{} already holds this student (same settings, labels and softlabel version): kept as it is \
             (training again would give the same weights; remove the folder to retrain anyway)",
            a.out.display()
        );
        return Ok(());
    }
    let last = trained.log.last();
    println!(
        "trained {} ({} parameters) on {} rows for {} epochs in {secs:.1}s (T = {}, alpha = {}); final loss {:.4}{}",
        trained.student.arch().describe(),
        trained.student.num_parameters(),
        trained.rows,
        trained.log.len(),
        trained.temperature,
        settings.alpha,
        last.map_or(f64::NAN, |l| l.train_loss),
        last.and_then(|l| l.val_errors.zip(l.val_accuracy))
            .map(|(e, acc)| format!(", val errors {e} ({:.2}%)", 100.0 * acc))
            .unwrap_or_default()
    );
    if let Some(e) = trained.saved_epoch {
        println!("kept epoch {e}, the best on validation (--keep best)");
    }
    if trained.stopped_early {
        println!("stopped early: no improvement on validation for {} epochs", settings.early_stop.unwrap_or(0));
    }
    println!("saved to {}", a.out.display());
    Ok(())
}
