//! Command-line definitions (clap derive), one file per subcommand, and the progress bars.

mod adjust_bias;
mod enums;
mod eval;
mod export;
mod inspect;
mod inspect_teacher;
mod loss;
mod merge;
mod precompute;
mod report;
mod run;
mod sweep;
mod train;
mod verify;

use std::path::PathBuf;
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use softlabel::data::DataSpec;
use softlabel::progress::Progress;

/// Offline knowledge distillation: ONNX teacher -> Parquet soft labels -> ndarray student.
#[derive(Debug, Parser)]
#[command(name = "softlabel", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: info, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// No progress bars.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// The ONNX Runtime shared library (default: $ORT_DYLIB_PATH, then the .ort/ folder `make setup`
    /// fills, then an installed onnxruntime Python package).
    #[arg(long, global = true, value_name = "PATH", help_heading = "Global options")]
    pub ort_lib: Option<PathBuf>,
    /// An object-storage setting for s3:// gs:// az:// URLs, KEY=VALUE with object_store's key names
    /// (aws_endpoint, aws_access_key_id, aws_region, allow_http, timeout, ...); repeatable; wins over
    /// the environment (AWS_*, GOOGLE_*, AZURE_*).
    #[arg(long, global = true, value_name = "KEY=VALUE", value_parser = parse_storage_option, help_heading = "Global options")]
    pub storage_option: Vec<(String, String)>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an ONNX teacher over a dataset and write a soft-label dataset (Parquet parts + _manifest.json).
    Precompute(precompute::PrecomputeArgs),
    /// Write a soft-label dataset from teacher outputs made elsewhere (any model, an API): --outputs
    /// FILE [--kind logits|probs|log-probs] joined to --data by id; precompute's other flags apply.
    Import(precompute::PrecomputeArgs),
    /// Train a student (MLP or CNN) from a soft-label dataset with the distillation loss.
    Train(train::TrainArgs),
    /// Evaluate a student on a dataset, optionally against the teacher's outputs.
    Eval(eval::EvalArgs),
    /// Export a student as an ONNX model (plus a safetensors file of its weights).
    Export(export::ExportArgs),
    /// Describe a soft-label dataset.
    Inspect(inspect::InspectArgs),
    /// List an ONNX teacher's inputs and every value its nodes compute, with the element type and shape
    /// ONNX Runtime infers: the names to pick intermediate layers by.
    InspectTeacher(inspect_teacher::InspectTeacherArgs),
    /// Check a soft-label dataset completely: manifest, checksums, ids, rows, soft = softmax(logits/T).
    Verify(verify::VerifyArgs),
    /// Combine soft-label datasets (the shards of one run) into one, checking every id appears once.
    Merge(merge::MergeArgs),
    /// Compare teacher and student: size, latency, throughput, accuracy, calibration; plots.
    Report(report::ReportArgs),
    /// Change one class's output bias of a trained student: by a given amount, or by the amount that
    /// minimises errors on labeled data (Hinton et al. 2015's fix for a class left out of the transfer set).
    AdjustBias(adjust_bias::AdjustBiasArgs),
    /// Run a pipeline file: precompute train and test, train, evaluate, report.
    Run(run::RunArgs),
    /// The distillation loss of given student logits (.npy) against a soft-label dataset, as training
    /// computes it: to check another implementation (a PyTorch loop, the Python reader) against it.
    Loss(loss::LossArgs),
    /// Train many students on one soft-label dataset (a grid or list of settings), resumably and in
    /// parallel, and rank them on validation rows.
    Sweep(sweep::SweepArgs),
}

/// Which columns of a dataset hold what (shared by precompute, eval and train --val).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Input column: a list / fixed-size-list column of numbers, or several scalar columns
    /// separated by commas (default: `input`, else the data's only list column).
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub input_column: Option<Vec<String>>,
    /// Hard-label column (default: `label` when the data has one; unlabeled otherwise).
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Id column, any integer type (default: `id` when present, else each row's index in the data).
    #[arg(long, value_name = "NAME")]
    pub id_column: Option<String>,
    /// Skip rows whose input holds NaN or infinity (counted in the output) instead of failing on them.
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Hard labels for `.npy` data: a `.npy` file of one integer per row.
    #[arg(long, value_name = "y.npy")]
    pub labels_npy: Option<std::path::PathBuf>,
    /// The input array of `.npz` data (default: its only array).
    #[arg(long, value_name = "NAME")]
    pub npz_key: Option<String>,
    /// The labels array of `.npz` data (one integer per row).
    #[arg(long, value_name = "NAME")]
    pub npz_labels: Option<String>,
}

impl DataArgs {
    /// The spec. With no `--input-column` and no `input` column in the data: `fallback` (the column a
    /// student was trained on), else the data's only list column when it has exactly one.
    pub fn spec(&self, data: &std::path::Path, fallback: Option<&str>) -> DataSpec {
        let input = match (&self.input_column, fallback) {
            (Some(c), _) => c.clone(),
            (None, _) if has_column(data, "input") => vec!["input".to_string()],
            (None, Some(f)) => vec![f.to_string()],
            (None, None) => match only_list_column(data) {
                Some(c) => {
                    tracing::info!(column = %c, "no --input-column and no 'input' column: using the only list column");
                    vec![c]
                }
                None => vec!["input".to_string()],
            },
        };
        DataSpec {
            input,
            label_column: self.label_column.clone(),
            id_column: self.id_column.clone(),
            skip_nonfinite: self.skip_nonfinite,
            labels_npy: self.labels_npy.clone(),
            npz_key: self.npz_key.clone(),
            npz_labels: self.npz_labels.clone(),
            images: Default::default(),
            image_prep: None,
            extra_inputs: Vec::new(),
        }
    }
}

impl DataArgs {
    /// The spec to read `data` for a trained student: its input column by default, and an image folder
    /// prepared as the student's labels' was.
    pub fn student_spec(&self, data: &std::path::Path, info: &softlabel::student::StudentInfo) -> DataSpec {
        let mut spec = self.spec(data, Some(&info.input_column));
        spec.image_prep = info.input_image.clone();
        spec
    }

    /// `--val PATH` read with these columns (the input column defaulting to the one `m`'s labels were
    /// made from), for `train` and `sweep`.
    pub fn val_set(
        &self,
        path: Option<&std::path::Path>,
        m: &softlabel::store::Manifest,
        window: (usize, Option<u32>),
    ) -> softlabel::Result<Option<softlabel::train::ValSet>> {
        path.map(|p| {
            let mut spec = self.spec(p, Some(&m.input.source_column));
            spec.image_prep = m.input.image.clone();
            softlabel::train::ValSet::load(p, &spec, m.num_classes, m.input.width, window)
        })
        .transpose()
    }
}

/// The name of the data's one list column, if it has exactly one.
fn only_list_column(data: &std::path::Path) -> Option<String> {
    use arrow_schema::DataType;
    let files = softlabel::data::parquet_files(data).ok()?;
    let builder = softlabel::data::open_parquet(files.first()?, softlabel::util::Links::Follow).ok()?;
    let lists: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .filter(|f| matches!(f.data_type(), DataType::FixedSizeList(..) | DataType::List(_) | DataType::LargeList(_)))
        .map(|f| f.name().clone())
        .collect();
    match lists.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn has_column(data: &std::path::Path, name: &str) -> bool {
    let Ok(files) = softlabel::data::parquet_files(data) else { return false };
    let Some(first) = files.first() else { return false };
    softlabel::data::open_parquet(first, softlabel::util::Links::Follow)
        .map(|b| b.schema().field_with_name(name).is_ok())
        .unwrap_or(false)
}

pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("softlabel={default},{default}")));
    // Colour only on a terminal: a log file or a CI capture gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

fn parse_storage_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let bars = Bars::new(cli.quiet);
    softlabel::util::remote::set_options(cli.storage_option.clone())?;
    let ort = cli.ort_lib.as_deref();
    match cli.command {
        Command::Precompute(a) => precompute::run(a, ort, &bars, false),
        Command::Import(a) => precompute::run(a, ort, &bars, true),
        Command::Train(a) => train::run(a, &bars),
        Command::Eval(a) => eval::run(a, &bars),
        Command::Export(a) => export::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::InspectTeacher(a) => inspect_teacher::run(a, ort),
        Command::Merge(a) => merge::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Report(a) => report::run(a, ort, &bars),
        Command::Sweep(a) => sweep::run(a, &bars),
        Command::Run(a) => run::run(a, ort, &bars),
        Command::AdjustBias(a) => adjust_bias::run(a),
        Command::Loss(a) => loss::run(a),
    }
}

/// indicatif bars on stderr (hidden when stderr is not a terminal or with --quiet).
pub struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(quiet: bool) -> Self {
        Bars { quiet, bar: Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn begin(&self, phase: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.to_string());
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        }
    }
    fn message(&self, text: &str) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.set_message(text.to_string());
            }
        }
    }
    fn end(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
}

/// Prints `value` as one JSON object on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Formats an optional fraction as a percentage.
pub fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
}
