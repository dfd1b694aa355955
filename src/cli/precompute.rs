use std::path::{Path, PathBuf};

use clap::Args;
use softlabel::config::teacher::{Models, PassOptions};
use softlabel::config::{Origin, TeacherConfig};
use softlabel::precompute::precompute;
use softlabel::store::Shard;

use super::enums::{Combine, OutputKind};
use super::{Bars, DataArgs};

/// The defaults, from their only home.
fn d() -> TeacherConfig {
    TeacherConfig::default()
}

#[derive(Debug, Args)]
pub struct PrecomputeArgs {
    /// The teacher: an ONNX model with one input [batch, ...] and an output [batch, classes] of logits,
    /// probabilities or log-probabilities. Repeat for an ensemble (outputs combined per --combine).
    #[arg(long, value_name = "MODEL.onnx", conflicts_with = "outputs")]
    pub teacher: Vec<PathBuf>,
    /// (`import`) Teacher outputs made elsewhere instead of a model: JSONL (`{"id": 7, "probs": [...]}`
    /// per line; keys logits, probs, log_probs or values), Parquet (an `id` column and a list column),
    /// `.npy`/`.npz` (row i is id i) or CSV; joined to --data by id.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    /// (`import`) The Parquet column, CSV columns (a,b,c) or JSONL key holding the outputs (default: the
    /// one of logits, probs, log_probs, values the file has; `input` for NumPy arrays).
    #[arg(long, value_name = "NAME", requires = "outputs")]
    pub outputs_column: Option<String>,
    /// (`import`) The teacher's name, recorded in the manifest.
    #[arg(long, value_name = "NAME", requires = "outputs")]
    pub teacher_name: Option<String>,
    /// (`import`) An identifier of the exact teacher (version, model hash, API model id), recorded.
    #[arg(long, value_name = "STRING", requires = "outputs")]
    pub teacher_id: Option<String>,
    /// (`import --kind topk-log-probs`) The number of classes K the log-probabilities are normalised
    /// over, when --class-names does not give it.
    #[arg(long, value_name = "K", requires = "outputs")]
    pub num_classes: Option<usize>,
    /// How an ensemble's outputs are combined: the mean of the logits, or the log of the mean probability.
    #[arg(long, value_enum, default_value_t = d().combine.into())]
    pub combine: Combine,
    /// What the teacher outputs; `auto` detects probabilities (rows >= 0 summing to 1) and
    /// log-probabilities (rows <= 0 whose exponentials sum to 1) on the first batch. Stored as logits.
    /// (`import --kind`: what the outputs file holds; auto takes it from the key or column name.)
    #[arg(long, alias = "kind", value_enum, default_value_t = d().output.into())]
    pub teacher_output: OutputKind,
    /// The teacher input to feed the data to, for models with several inputs (the others unfed: use
    /// --input to feed them all).
    #[arg(long, value_name = "NAME", conflicts_with = "input")]
    pub input_name: Option<String>,
    /// A teacher with several inputs: feed model input NAME from data column COLUMN, repeated for every
    /// input (e.g. --input input_ids=ids --input attention_mask=mask), each converted to the element
    /// type and shape the model declares. The data's input (stored in the dataset, what the student
    /// learns from) is --input-column when given, else the first --input's column; the others are fed to
    /// the teacher and recorded in the manifest.
    #[arg(long, value_name = "NAME=COLUMN", conflicts_with = "outputs")]
    pub input: Vec<softlabel::config::teacher::InputMap>,
    /// The teacher output to read, for models with several outputs (default: the first).
    #[arg(long, value_name = "NAME")]
    pub output_name: Option<String>,
    /// The data: a Parquet file or a folder of Parquet files.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Softmax temperature for the stored `soft` column (finite, > 0). Raw logits are stored too,
    /// so students may train at any temperature later.
    #[arg(long, short = 'T', value_name = "T", allow_negative_numbers = true)]
    pub temperature: f32,
    /// Output folder for the soft-label dataset (created; must be empty unless --overwrite).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub data_args: DataArgs,
    /// Rows per inference call.
    #[arg(long, default_value_t = d().batch_size, value_name = "N")]
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads (0: all cores).
    #[arg(long, default_value_t = d().threads, value_name = "N")]
    pub threads: usize,
    /// Class names, in output order, separated by commas (recorded in the metadata).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub class_names: Option<Vec<String>>,
    /// Rows per part file.
    #[arg(long, default_value_t = d().rows_per_part, value_name = "N")]
    pub rows_per_part: usize,
    /// Replace the softlabel files of a non-empty output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Continue an interrupted run in --out: committed parts are verified and kept, the unfinished one
    /// discarded, and work restarts after the last committed row. The result is identical to an
    /// uninterrupted run (same settings required).
    #[arg(long)]
    pub resume: bool,
    /// Process only shard I of N (0 <= I < N): the rows whose id hashes to I, stable across runs. Merge
    /// the N outputs with `softlabel merge`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Store only the K largest classes per row (topk_index, topk_logit) and the exact normaliser
    /// logsumexp(logits/T) over all classes, instead of dense logits and soft.
    #[arg(long, value_name = "K", conflicts_with = "sample_k")]
    pub top_k: Option<usize>,
    /// Store K classes per row drawn from softmax(logits/T) (sample_index): training on them is an
    /// unbiased estimate of the full distillation loss (Anshumann et al. 2025), unlike top-k.
    #[arg(long, value_name = "K")]
    pub sample_k: Option<usize>,
    /// Seed of --sample-k's draws (with the row id: reproducible across batching, shards and resumes).
    #[arg(long, default_value_t = d().sample_seed, value_name = "S")]
    pub sample_seed: u64,
    /// Leave the input column out: ids, labels and teacher outputs only. `train --inputs SOURCE` joins
    /// the source back by id (checking its fingerprint).
    #[arg(long)]
    pub no_inputs: bool,
    /// Store logits and probabilities (dense) or top-k logits as float16: half the bytes, with a
    /// relative error up to 2^-11 (measured in SCHEMA.md).
    #[arg(long)]
    pub float16: bool,
    /// Store N views of every row: view 0 as it is, the others shifted by up to --max-shift pixels
    /// (zero fill), each with the teacher's outputs for it; the shift is recorded in the view, shift_x
    /// and shift_y columns (seeded by --view-seed and the row id, so every view is reproducible).
    #[arg(long, default_value_t = d().views, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub views: u16,
    /// Largest shift of a view along each axis, in pixels.
    #[arg(long, default_value_t = d().max_shift, value_name = "PIXELS")]
    pub max_shift: u16,
    /// The input row's image layout for --views: HxW or CxHxW, row-major (default: from the teacher's
    /// input shape).
    #[arg(long, value_name = "HxW")]
    pub image: Option<String>,
    /// Seed of the views' shifts or crops.
    #[arg(long, default_value_t = d().view_seed, value_name = "S")]
    pub view_seed: u64,
    /// Image data: views are FKD-style random resized crops instead of shifts, with an area of MIN to
    /// MAX of the image's (aspect 3/4 to 4/3, as torchvision's RandomResizedCrop), resized to the
    /// teacher's size; each view's crop box is stored (crop_x, crop_y, crop_w, crop_h) and drawn from
    /// the id, the view and --view-seed. View 0 is the prepared image.
    #[arg(long, value_name = "MIN,MAX", value_delimiter = ',', num_args = 1, requires = "views")]
    pub crop_scale: Option<Vec<f32>>,
    /// Crop views are flipped left-right with probability 1/2 (recorded in the flip column).
    #[arg(long, requires = "crop_scale")]
    pub flip: bool,
    /// Store these intermediate values of the teacher (names as `softlabel inspect-teacher` lists them)
    /// as `feature.NAME` columns beside its outputs, for feature-based distillation.
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    pub features: Vec<String>,
    /// How a feature map of more than one dimension a row ([C, H, W]) is stored: global average or max
    /// pooling to [C], or whole (flattened).
    #[arg(long, value_enum, default_value_t = d().feature_pool.into())]
    pub feature_pool: super::enums::FeaturePool,
    /// Project every feature (after pooling) to D values by a seeded Gaussian random projection, to
    /// bound the bytes a row costs (the seed is recorded).
    #[arg(long, value_name = "D")]
    pub feature_dim: Option<usize>,
    /// Seed of the feature projections.
    #[arg(long, default_value_t = d().feature_seed, value_name = "S")]
    pub feature_seed: u64,
    /// Image folders: resize each image's shorter side to S pixels (antialiased bilinear, as
    /// torchvision's Resize(S)), then centre-crop to the teacher's height x width (zero-padded where
    /// smaller, as CenterCrop). Without it every image must already have the teacher's size.
    #[arg(long, value_name = "S")]
    pub resize: Option<u32>,
    /// Image folders: multiply pixel values (0-255) by X (e.g. 1/255) and store float32; with --mean and
    /// --std, (v * X - mean) / std per channel, as torchvision's ToTensor + Normalize. Default: the
    /// values as they are, uint8 0-255, as the Parquet path stores pixels.
    #[arg(long, value_name = "X|1/N", value_parser = parse_scale)]
    pub scale: Option<f64>,
    /// Image folders: per-channel means subtracted after --scale (one value, or one per channel).
    #[arg(long, value_name = "M,...", value_delimiter = ',', allow_negative_numbers = true)]
    pub mean: Option<Vec<f32>>,
    /// Image folders: per-channel standard deviations divided by after --mean.
    #[arg(long, value_name = "S,...", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Image folders: skip (and count, in skipped_nonfinite_rows) images that do not decode, each named
    /// in a warning, instead of failing on the first.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Sequence teachers (output [batch, positions, classes]): what position t's output is about,
    /// token t (`same`: a tagger, labels from a list-of-tags label column) or token t + 1 (`next`: a
    /// language model, labels are the next tokens). Recorded in the manifest. Default: same.
    #[arg(long, value_enum)]
    pub targets: Option<super::enums::Targets>,
    /// Sequence teachers: the padding token id. Its positions are masked: not stored, and fed as 0 to
    /// --mask-input.
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub pad_id: Option<i64>,
    /// Sequence teachers: the teacher's attention-mask input, fed 1 where a token is and 0 at padding
    /// (derived from the input column and --pad-id).
    #[arg(long, value_name = "NAME", requires = "pad_id")]
    pub mask_input: Option<String>,
    /// Sequence teachers: the tokenizer or vocabulary file the token ids come from; its sha256 is
    /// recorded (manifest `sequence.vocab_sha256`).
    #[arg(long, value_name = "FILE")]
    pub vocab_file: Option<PathBuf>,
    /// Print the manifest as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl PrecomputeArgs {
    /// The flags as the teacher config (every field set: clap fills in the defaults from [`d`]).
    fn config(&self) -> TeacherConfig {
        TeacherConfig {
            model: match &self.outputs {
                Some(outputs) => Models::Imported(softlabel::teacher::ImportSource {
                    outputs: outputs.clone(),
                    kind: self.teacher_output.into(),
                    column: self.outputs_column.clone(),
                    teacher_name: self.teacher_name.clone(),
                    teacher_id: self.teacher_id.clone(),
                    num_classes: self.num_classes,
                    class_names: self.class_names.clone(),
                }),
                None => Models::Many(self.teacher.clone()),
            },
            combine: self.combine.into(),
            output: self.teacher_output.into(),
            input_name: self.input_name.clone(),
            inputs: self.input.clone(),
            output_name: self.output_name.clone(),
            temperature: Some(self.temperature),
            batch_size: self.batch_size,
            threads: self.threads,
            class_names: self.class_names.clone(),
            rows_per_part: self.rows_per_part,
            top_k: self.top_k,
            sample_k: self.sample_k,
            sample_seed: self.sample_seed,
            float16: self.float16,
            no_inputs: self.no_inputs,
            views: self.views,
            max_shift: self.max_shift,
            image: self.image.clone(),
            view_seed: self.view_seed,
            crop_scale: self.crop_scale.as_deref().and_then(|s| Some([*s.first()?, *s.get(1)?])),
            features: self.features.clone(),
            feature_pool: self.feature_pool.into(),
            feature_dim: self.feature_dim,
            feature_seed: self.feature_seed,
            flip: self.flip,
            targets: self.targets.map(Into::into),
            pad_id: self.pad_id,
            mask_input: self.mask_input.clone(),
            vocab_file: self.vocab_file.clone(),
        }
    }
}

pub fn run(a: PrecomputeArgs, ort_lib: Option<&Path>, bars: &Bars, import: bool) -> anyhow::Result<()> {
    keep_batches_on_the_heap();
    let usage = |m: &str| anyhow::Error::new(softlabel::Error::Config(m.to_string()));
    match (import, &a.outputs) {
        (true, None) => return Err(usage("import needs --outputs FILE (teacher outputs made elsewhere)")),
        (false, Some(_)) => {
            return Err(usage("--outputs is for `softlabel import`; precompute runs --teacher MODEL.onnx"))
        }
        (false, None) if a.teacher.is_empty() => {
            return Err(usage(
                "precompute needs --teacher MODEL.onnx (for teacher outputs made elsewhere: softlabel import --outputs FILE)",
            ))
        }
        _ => {}
    }
    let pass = PassOptions {
        resume: a.resume,
        overwrite: a.overwrite,
        shard: a.shard,
        ort_lib: ort_lib.map(Path::to_path_buf),
    };
    if a.crop_scale.as_ref().is_some_and(|s| s.len() != 2) {
        return Err(usage("--crop-scale takes MIN,MAX (e.g. 0.35,1)"));
    }
    let mut spec = a.data_args.spec(&a.data, None);
    spec.images = softlabel::data::images::ImageOptions {
        resize: a.resize,
        scale: a.scale,
        mean: a.mean.clone(),
        std: a.std.clone(),
        skip_bad_images: a.skip_bad_images,
    };
    // With --input, the data's input is --input-column when given, else the first --input's column.
    if let (Some(first), None) = (a.input.first(), &a.data_args.input_column) {
        spec.input = vec![first.column.clone()];
    }
    let settings = a.config().validate(&Origin::Flags, a.data.clone(), spec, a.out.clone(), &pass)?;
    let start = std::time::Instant::now();
    let m = precompute(&settings, bars)?;
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        return super::print_json(&m);
    }
    println!(
        "wrote {} rows ({} classes, T = {}) in {} part(s) to {} in {secs:.1}s ({:.0} rows/s)",
        m.rows,
        m.num_classes,
        m.temperature,
        m.parts.len(),
        settings.out.display(),
        m.rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `X` or `1/N`.
fn parse_scale(text: &str) -> Result<f64, String> {
    let bad = || format!("'{text}' is not a number or 1/N");
    match text.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            Ok(a / b)
        }
        None => text.trim().parse().map_err(|_| bad()),
    }
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text).map_err(|e| e.to_string())
}

/// Batches of several MB are allocated and freed thousands of times by precompute's three threads; glibc
/// would mmap and munmap each one, paying a page fault per 4 KiB page every time. Keeping them on the heap
/// (freed memory is reused, and returned to the system above 256 MiB of free space) halved precompute's
/// system time and cut its wall time by a quarter on the light teacher. One arena: with one per thread,
/// each kept its own freed batches and peak memory grew with the run (193 -> 300 MB from 60k to 600k
/// rows; 193 -> 217 MB with one arena). Not for `train`, whose large windows are better returned to the
/// system as soon as they are freed.
fn keep_batches_on_the_heap() {
    // SAFETY: mallopt only sets allocator parameters; called before precompute starts its threads.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
