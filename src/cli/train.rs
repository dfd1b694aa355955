use std::path::PathBuf;

use clap::Args;
use softlabel::dataset::{DataSource, DataSpec};
use softlabel::pipeline::{optimizer, student_info, with_threads, OptimizerKind, TrainingRows};
use softlabel::store::SoftLabels;
use softlabel::student::{self, train::ValSet, Checkpointing, LrSchedule, TrainSettings};

use super::{Bars, DataArgs};

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
    /// Hidden layer sizes, separated by commas.
    #[arg(long, value_delimiter = ',', default_value = "800,800", value_name = "N,N,...")]
    pub hidden: Vec<usize>,
    /// Passes over the data.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub epochs: usize,
    /// Rows per step.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub batch_size: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Learning rate (default: 1e-3 for adam, 0.1 for sgd).
    #[arg(long, value_name = "X")]
    pub lr: Option<f32>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9, value_name = "X")]
    pub momentum: f32,
    /// Weight decay (decoupled for adam, L2 for sgd).
    #[arg(long, default_value_t = 0.0, value_name = "X")]
    pub weight_decay: f32,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    pub schedule: LrSchedule,
    /// Linear learning-rate warm-up, in epochs.
    #[arg(long, default_value_t = 0.0, value_name = "E")]
    pub warmup_epochs: f32,
    /// Weight of the distillation term in [0, 1]: 1 learns only from the teacher, 0 only from labels.
    #[arg(long, default_value_t = 0.9, value_name = "A")]
    pub alpha: f32,
    /// Distillation temperature (default: the temperature the labels were made with).
    #[arg(long, short = 'T', value_name = "T")]
    pub temperature: Option<f32>,
    /// Seed for initialisation and shuffling (same seed and threads: same weights).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Clip the gradient's global L2 norm.
    #[arg(long, value_name = "X")]
    pub clip_norm: Option<f32>,
    /// Training threads (0: all cores).
    #[arg(long, default_value_t = 0, value_name = "N")]
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
    #[arg(long, default_value_t = softlabel::student::train::DEFAULT_MEMORY_BUDGET_MIB, value_name = "MIB")]
    pub memory_budget: u64,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: TrainArgs, bars: &Bars) -> anyhow::Result<()> {
    let settings = TrainSettings {
        hidden: a.hidden.clone(),
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer: optimizer(a.optimizer, a.lr, a.momentum, a.weight_decay),
        schedule: a.schedule,
        warmup_epochs: a.warmup_epochs,
        alpha: a.alpha,
        temperature: a.temperature,
        seed: a.seed,
        clip_norm: a.clip_norm,
        exclude_labels: a.exclude_labels.clone(),
        memory_budget_mib: a.memory_budget,
    };
    settings.validate()?;
    let labels = SoftLabels::open(&a.labels)?;
    let m = labels.manifest().clone();
    let val = match &a.val {
        Some(path) => {
            Some(load_val(path, &a.val_args.spec(path, Some(&m.input.source_column)), m.num_classes, m.input.width)?)
        }
        None => None,
    };
    let rows = TrainingRows::new(&labels, &settings, a.inputs.as_deref().map(|p| (p, a.ignore_fingerprint)))?;
    let start = std::time::Instant::now();
    let cp = Checkpointing { dir: a.out.clone(), resume: a.resume, labels_sha256: labels.manifest_sha256()? };
    let td = rows.train_data(&labels);
    let trained = with_threads(a.threads, || student::train(&td, &settings, val.as_ref(), Some(&cp), bars))??;
    let secs = start.elapsed().as_secs_f64();
    let mut info = student_info(&trained, &settings, &labels, secs)?;
    student::io::save(&a.out, &trained.mlp, &mut info, &trained.log)?;
    student::checkpoint::remove(&a.out)?;
    if a.json {
        return super::print_json(&info);
    }
    let last = trained.log.last();
    println!(
        "trained {:?} ({} parameters) on {} rows for {} epochs in {secs:.1}s (T = {}, alpha = {}); final loss {:.4}{}",
        trained.mlp.dims(),
        trained.mlp.num_parameters(),
        trained.rows,
        settings.epochs,
        trained.temperature,
        settings.alpha,
        last.map_or(f64::NAN, |l| l.train_loss),
        last.and_then(|l| l.val_errors.zip(l.val_accuracy))
            .map(|(e, acc)| format!(", val errors {e} ({:.2}%)", 100.0 * acc))
            .unwrap_or_default()
    );
    println!("saved to {}", a.out.display());
    Ok(())
}

fn load_val(path: &std::path::Path, spec: &DataSpec, classes: usize, width: usize) -> anyhow::Result<ValSet> {
    let source = DataSource::open(path, spec)?;
    if source.label_column().is_none() {
        anyhow::bail!(softlabel::Error::data(path, "--val data has no label column (pass --label-column)"));
    }
    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    for b in source.batches(8192) {
        let b = b?;
        if b.width != width {
            anyhow::bail!(softlabel::Error::data(
                &b.file,
                format!(
                    "column '{}' has {} values per row, the labels' inputs have {width}",
                    source.input_name(),
                    b.width
                )
            ));
        }
        let flat = b.input_f32();
        for (i, l) in b.labels.iter().enumerate() {
            if b.nonfinite.binary_search(&i).is_ok() {
                continue;
            }
            inputs.extend_from_slice(&flat[i * width..(i + 1) * width]);
            match l {
                Some(y) if *y >= 0 && (*y as usize) < classes => labels.push(*y),
                Some(y) => anyhow::bail!(softlabel::Error::data(
                    &b.file,
                    format!("column '{}', row {}: label {y} is outside [0, {classes}): --val has other classes than the labels", source.label_column().unwrap_or("label"), b.first_row + i as u64)
                )),
                None => anyhow::bail!(softlabel::Error::data(
                    &b.file,
                    format!("column '{}', row {}: label is null", source.label_column().unwrap_or("label"), b.first_row + i as u64)
                )),
            }
        }
    }
    let rows = labels.len();
    Ok(ValSet { inputs: ndarray::Array2::from_shape_vec((rows, width), inputs)?, labels })
}
