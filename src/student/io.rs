//! The student on disk: `STUDENT_DIR/student.safetensors` (weights, PyTorch layout) and
//! `STUDENT_DIR/student.json` (architecture, input, training settings, provenance, metrics).
//!
//! Tensor names: `layers.{i}.weight` `[out, in]` and `layers.{i}.bias` `[out]` as in `torch.nn.Linear`,
//! plus `input.shift` and `input.scale` `[in]`: the model computes `(x - shift) * scale` first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2};

use super::layers::{InputScaling, Linear};
use super::mlp::Mlp;
use super::Student;
use crate::config::TrainSettings;
use crate::data::ElementType;
use crate::error::{Error, Result};
use crate::util::write_atomic;
use crate::util::{read_bounded, read_text_bounded, sha256_file, Links};

/// File names inside a student folder.
pub const WEIGHTS: &str = "student.safetensors";
/// The description file.
pub const INFO: &str = "student.json";
/// The per-epoch training log (JSON lines).
pub const TRAIN_LOG: &str = "train_log.jsonl";

/// One line of the training log (`train_log.jsonl`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean loss over the epoch's steps.
    pub train_loss: f64,
    /// The feature and relation terms' share of `train_loss` (`--hint`, `--rkd`, `--sp`, `--at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation_loss: Option<f64>,
    /// Each of those terms, by name (`at /Relu_3_output_0@block2`); they sum to `relation_loss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_losses: Option<std::collections::BTreeMap<String, f64>>,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Accuracy on the validation set, if one was given.
    pub val_accuracy: Option<f64>,
    /// Errors on the validation set.
    pub val_errors: Option<u64>,
    /// Share of validation rows where the student picks the teacher's top class (when the validation
    /// rows have teacher outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_agreement: Option<f64>,
    /// Mean KL(teacher || student) at T = 1 on the validation rows, in nats (dense teacher outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_kl: Option<f64>,
    /// Wall time of the epoch (training and validation).
    pub seconds: f64,
}

/// The largest `student.json` or `checkpoint.json` read (they hold settings and a per-epoch log).
pub const MAX_INFO_BYTES: u64 = 64 << 20;
/// The largest training log read.
pub const MAX_LOG_BYTES: u64 = 256 << 20;
/// The largest weights file read (a student is small by purpose; 4 GiB is a billion parameters).
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;

/// What `student.json` says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentInfo {
    /// Always "softlabel-student".
    pub format: String,
    /// Format version.
    pub version: u32,
    /// "softlabel VERSION".
    pub created_by: String,
    /// `[input, hidden..., classes]`.
    pub dims: Vec<usize>,
    /// The network: "mlp", "cnn" or "embed".
    #[serde(default, skip_serializing_if = "is_mlp")]
    pub kind: super::StudentKind,
    /// Output channels of each convolution block (cnn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<usize>,
    /// The input image `[C, H, W]` (cnn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image: Vec<usize>,
    /// The embedding table (embed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<super::EmbedSpec>,
    /// Whether each convolution block is batch-normalised (cnn).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch_norm: bool,
    /// Always "relu".
    pub activation: String,
    /// The raw input the student expects (the teacher's input column and type).
    pub input_column: String,
    /// Element type of the raw input in the labels it learned from.
    pub input_dtype: ElementType,
    /// Per-row shape.
    pub input_shape: Vec<usize>,
    /// How the labels' image folder became rows: evaluating on an image folder prepares it the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image: Option<crate::data::images::ImagePrep>,
    /// The teacher's input name, which the exported student takes too (so it drops in where the
    /// teacher ran; absent in students trained before it was recorded: then `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_input_name: Option<String>,
    /// The teacher's input element type, which the exported student takes (absent: `input_dtype`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_input_type: Option<ElementType>,
    /// Class names, when known.
    pub class_names: Option<Vec<String>>,
    /// The settings it was trained with.
    pub settings: TrainSettings,
    /// The temperature used.
    pub temperature: f32,
    /// The labels folder it learned from.
    pub labels_dir: String,
    /// sha256 of that folder's _manifest.json.
    pub labels_manifest_sha256: String,
    /// The teacher's sha256 (from the labels).
    pub teacher_sha256: String,
    /// Rows trained on.
    pub train_rows: u64,
    /// The last epoch's log line.
    pub final_epoch: Option<EpochLog>,
    /// The epoch whose weights were saved, when it is not the last (`--keep best`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_epoch: Option<usize>,
    /// Whether training stopped before its last epoch (`--early-stop`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
    /// The validation rows it was watched on (their source's fingerprint or dataset's manifest sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated_on: Option<String>,
    /// Wall time of training in seconds.
    pub train_seconds: f64,
    /// sha256 of student.safetensors.
    pub weights_sha256: String,
    /// Output-bias changes made after training (`softlabel adjust-bias`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bias_adjustments: Vec<BiasAdjustment>,
    /// Trained on a sequence dataset: how its sequences were made. The student reads a window of
    /// `settings.window` tokens each side of a position; its export takes the teacher's sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<crate::store::Sequence>,
}

fn is_mlp(k: &super::StudentKind) -> bool {
    *k == super::StudentKind::Mlp
}

impl StudentInfo {
    /// The network's kind and shape, as recorded.
    pub fn arch(&self) -> super::Arch {
        super::Arch {
            kind: self.kind,
            dims: self.dims.clone(),
            channels: self.channels.clone(),
            image: self.image.clone(),
            embed: self.embed,
            batch_norm: self.batch_norm,
        }
    }
}

/// One change of a class's output bias after training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BiasAdjustment {
    /// The class.
    pub class: usize,
    /// Added to its bias.
    pub by: f32,
    /// Where the value came from: "given", or the data it was tuned on.
    pub chosen_on: String,
}

/// A student folder loaded back.
#[derive(Debug)]
pub struct StudentFile {
    /// The folder.
    pub dir: PathBuf,
    /// The network.
    pub student: Box<dyn Student>,
    /// Its description.
    pub info: StudentInfo,
}

impl Clone for StudentFile {
    fn clone(&self) -> Self {
        StudentFile { dir: self.dir.clone(), student: self.student.boxed(), info: self.info.clone() }
    }
}

/// One named f32 tensor.
pub type Tensor = (String, Vec<usize>, Vec<f32>);
/// Tensors by name: shape and values.
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Serialises tensors as a safetensors file (F32, little-endian) with `metadata` in its header.
pub fn write_tensors(tensors: &[Tensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata).unwrap_or_default());
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let len = data.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut h = serde_json::to_vec(&header).unwrap_or_default();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Parses a safetensors file of F32 tensors.
pub fn read_tensors(bytes: &[u8], path: &Path) -> Result<Tensors> {
    let bad = |m: String| Error::dataset(path, m);
    if bytes.len() < 8 {
        return Err(bad("too short for a safetensors file".into()));
    }
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
    if hlen > (bytes.len() - 8) as u64 {
        return Err(bad("header length exceeds the file".into()));
    }
    let hlen = hlen as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + hlen]).map_err(|e| bad(format!("invalid header: {e}")))?;
    let data = &bytes[8 + hlen..];
    let mut out = BTreeMap::new();
    for (name, t) in &header {
        if name == "__metadata__" {
            continue;
        }
        if t.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            return Err(bad(format!("tensor '{name}' is not F32")));
        }
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad(format!("tensor '{name}' has no valid shape")))?;
        let off: Vec<usize> =
            t.get("data_offsets").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let ok = off.len() == 2
            && off[0] <= off[1]
            && off[1] <= data.len()
            && n.and_then(|n| n.checked_mul(4)) == Some(off[1] - off[0]);
        if !ok {
            return Err(bad(format!("tensor '{name}' has bad data offsets {off:?} for shape {shape:?}")));
        }
        let values =
            data[off[0]..off[1]].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.insert(name.clone(), (shape, values));
    }
    Ok(out)
}

/// Takes tensor `name` with `shape` out of `tensors`.
pub fn take_tensor(tensors: &mut Tensors, name: &str, shape: &[usize], path: &Path) -> Result<Vec<f32>> {
    let (got, values) = tensors.remove(name).ok_or_else(|| Error::dataset(path, format!("no tensor '{name}'")))?;
    if got != shape {
        return Err(Error::dataset(path, format!("tensor '{name}' has shape {got:?}, expected {shape:?}")));
    }
    Ok(values)
}

/// Serialises a student as a safetensors file with `metadata` in its header.
pub fn to_safetensors(student: &dyn Student, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    write_tensors(&student.tensors(), metadata)
}

/// Parses a safetensors file into an MLP with `dims`.
pub fn from_safetensors(bytes: &[u8], dims: &[usize], path: &Path) -> Result<Mlp> {
    let mut t = read_tensors(bytes, path)?;
    mlp_from_tensors(&mut t, dims, path)
}

/// Builds the student `arch` describes from tensors named as its `tensors` names them.
pub fn student_from_tensors(t: &mut Tensors, arch: &super::Arch, path: &Path) -> Result<Box<dyn Student>> {
    match arch.kind {
        super::StudentKind::Mlp => Ok(Box::new(mlp_from_tensors(t, &arch.dims, path)?)),
        super::StudentKind::Cnn => {
            let image = arch.image3().map_err(|e| Error::dataset(path, e.to_string()))?;
            Ok(Box::new(super::Cnn::from_tensors(t, image, &arch.channels, arch.batch_norm, &arch.dims, path)?))
        }
        super::StudentKind::Embed => {
            let spec = arch.embed_spec().map_err(|e| Error::dataset(path, e.to_string()))?;
            Ok(Box::new(super::Embed::from_tensors(t, &spec, &arch.channels, &arch.dims, path)?))
        }
    }
}

/// The input scaling's tensors, `input.shift` and `input.scale` (`[features]` each).
pub fn scaling_tensors(scaling: &InputScaling) -> Vec<Tensor> {
    vec![
        ("input.shift".to_string(), vec![scaling.shift.len()], scaling.shift.to_vec()),
        ("input.scale".to_string(), vec![scaling.scale.len()], scaling.scale.to_vec()),
    ]
}

/// Fully connected layers' tensors, `layers.{i}.weight` (`[out, in]`, as `torch.nn.Linear`) and
/// `layers.{i}.bias`.
pub fn linear_tensors(layers: &[Linear]) -> Vec<Tensor> {
    let mut out = Vec::with_capacity(2 * layers.len());
    for (i, l) in layers.iter().enumerate() {
        let wt = l.w.t();
        out.push((format!("layers.{i}.weight"), vec![wt.nrows(), wt.ncols()], wt.iter().copied().collect()));
        out.push((format!("layers.{i}.bias"), vec![l.b.len()], l.b.to_vec()));
    }
    out
}

/// Takes the input scaling of `d` features out of `t` (as [`scaling_tensors`] names it).
pub fn scaling_from_tensors(t: &mut Tensors, d: usize, path: &Path) -> Result<InputScaling> {
    let shift = Array1::from(take_tensor(t, "input.shift", &[d], path)?);
    let scale = Array1::from(take_tensor(t, "input.scale", &[d], path)?);
    Ok(InputScaling { shift, scale })
}

/// Takes the fully connected layers of `dims = [in, ..., out]` out of `t` (as [`linear_tensors`] names them).
pub fn linears_from_tensors(t: &mut Tensors, dims: &[usize], path: &Path) -> Result<Vec<Linear>> {
    let mut layers = Vec::new();
    for (i, io) in dims.windows(2).enumerate() {
        let wt = Array2::from_shape_vec(
            (io[1], io[0]),
            take_tensor(t, &format!("layers.{i}.weight"), &[io[1], io[0]], path)?,
        )
        .map_err(|e| Error::dataset(path, e.to_string()))?;
        let b = Array1::from(take_tensor(t, &format!("layers.{i}.bias"), &[io[1]], path)?);
        layers.push(Linear { w: wt.t().to_owned(), b });
    }
    Ok(layers)
}

/// Builds an MLP with `dims` from tensors named as [`Mlp`]'s `tensors` names them.
pub fn mlp_from_tensors(t: &mut Tensors, dims: &[usize], path: &Path) -> Result<Mlp> {
    if dims.len() < 2 {
        return Err(Error::dataset(path, format!("dims {dims:?} need at least input and output")));
    }
    let scaling = scaling_from_tensors(t, dims[0], path)?;
    Ok(Mlp { layers: linears_from_tensors(t, dims, path)?, scaling })
}

/// Writes a student folder: weights first, then student.json naming their hash (each atomically).
pub fn save(dir: &Path, student: &dyn Student, info: &mut StudentInfo, log: &[EpochLog]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), info.format.clone());
    meta.insert("dims".to_string(), serde_json::to_string(&info.dims).unwrap_or_default());
    meta.insert("created_by".to_string(), info.created_by.clone());
    let bytes = to_safetensors(student, &meta);
    let wpath = dir.join(WEIGHTS);
    write_atomic(&wpath, &bytes)?;
    info.weights_sha256 = sha256_file(&wpath)?;
    let lines: String = log.iter().map(|l| serde_json::to_string(l).unwrap_or_default() + "\n").collect();
    write_atomic(&dir.join(TRAIN_LOG), lines.as_bytes())?;
    let json = serde_json::to_vec_pretty(info).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&dir.join(INFO), &json)
}

/// The training log of a student folder (empty if it has none).
pub fn load_log(dir: &Path) -> Result<Vec<EpochLog>> {
    let path = dir.join(TRAIN_LOG);
    match read_text_bounded(&path, Links::Refuse, MAX_LOG_BYTES, "a training log") {
        Ok(text) => text
            .lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::dataset(&path, format!("line {}: {e}", i + 1))))
            .collect(),
        Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Loads a student folder, checking the weights' hash against student.json.
pub fn load(dir: &Path) -> Result<StudentFile> {
    let ipath = dir.join(INFO);
    let text = read_text_bounded(&ipath, Links::Refuse, MAX_INFO_BYTES, "a student.json")?;
    let info: StudentInfo =
        serde_json::from_str(&text).map_err(|e| Error::dataset(&ipath, format!("invalid student.json: {e}")))?;
    if info.format != "softlabel-student" {
        return Err(Error::dataset(&ipath, "not a softlabel student (field 'format')"));
    }
    let wpath = dir.join(WEIGHTS);
    let bytes = read_bounded(&wpath, Links::Refuse, MAX_WEIGHTS_BYTES, "a student's weights file")?;
    let sha = crate::util::sha256_hex(&bytes);
    if sha != info.weights_sha256 {
        return Err(Error::dataset(
            &wpath,
            "sha256 differs from student.json's weights_sha256: the weights were changed",
        ));
    }
    let mut tensors = read_tensors(&bytes, &wpath)?;
    let student = student_from_tensors(&mut tensors, &info.arch(), &wpath)?;
    Ok(StudentFile { dir: dir.to_path_buf(), student, info })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn safetensors_round_trip() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut mlp = Mlp::init(&[5, 4, 3], &mut rng);
        mlp.scaling.shift = Array1::from(vec![0.5; 5]);
        let bytes = to_safetensors(&mlp, &BTreeMap::new());
        let back = from_safetensors(&bytes, &[5, 4, 3], Path::new("x")).unwrap();
        assert_eq!(mlp, back);
        assert!(from_safetensors(&bytes, &[5, 3, 3], Path::new("x")).is_err());
        assert!(from_safetensors(&bytes[..20], &[5, 4, 3], Path::new("x")).is_err());
    }
}
