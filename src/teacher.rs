//! The teacher: an ONNX model run by ONNX Runtime, and finding the ONNX Runtime shared library.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), found in this order: an explicit path
//! (`--ort-lib`), the `ORT_DYLIB_PATH` environment variable, the `.ort/` folder that `make setup` fills,
//! and finally an installed `onnxruntime` Python package.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType};

use crate::dataset::{
    numeric_to_f32, numeric_to_f64, numeric_to_i32, numeric_to_i64, numeric_to_u8, sha256_file, Batch,
};
use crate::error::{Error, Result};

/// The unversioned and versioned names the library goes by in the `onnxruntime` wheel.
const LIB_PREFIX: &str = "libonnxruntime.so";

static ENVIRONMENT: OnceLock<std::result::Result<(PathBuf, Environment), String>> = OnceLock::new();

/// Finds the ONNX Runtime shared library; see the module docs for the order.
pub fn find_ort_library(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::Runtime(format!("--ort-lib {}: no such file", p.display())))
        };
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Runtime(format!(
                "ORT_DYLIB_PATH={}: no such file; point it at libonnxruntime.so.<version> (from `pip install \
                 onnxruntime`, in .../onnxruntime/capi/), or unset it to use the library `make setup` links",
                p.display()
            )))
        };
    }
    let mut tried = Vec::new();
    for dir in setup_dirs() {
        let candidate = dir.join(".ort").join(LIB_PREFIX);
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    match python_package_library() {
        Some(p) => Ok(p),
        None => {
            tried.push("the onnxruntime Python package (python3 -c 'import onnxruntime')".into());
            Err(Error::Runtime(format!(
                "ONNX Runtime shared library not found (tried: {}). Run `make setup` in the softlabel \
                 checkout, or `pip install onnxruntime` and pass --ort-lib \
                 .../site-packages/onnxruntime/capi/libonnxruntime.so.<version>, or set ORT_DYLIB_PATH",
                tried.join(", ")
            )))
        }
    }
}

/// Folders where `make setup` may have put `.ort/`: the checkout this binary was built from, found from
/// the executable's location (target/<profile>/[deps/]) and from the build-time manifest dir.
fn setup_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    dirs.dedup();
    dirs
}

fn python_package_library() -> Option<PathBuf> {
    let mut pythons = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin").join("python"));
    }
    pythons.push(PathBuf::from("python3"));
    for py in pythons {
        let out = std::process::Command::new(&py)
            .args(["-c", "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let capi = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(LIB_PREFIX)))
            .collect();
        libs.sort();
        if let Some(lib) = libs.pop() {
            return Some(lib);
        }
    }
    None
}

/// Loads ONNX Runtime once per process and returns its environment.
pub fn environment(ort_lib: Option<&Path>) -> Result<&'static Environment> {
    let entry = ENVIRONMENT.get_or_init(|| {
        let path = find_ort_library(ort_lib).map_err(|e| e.to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", path.display()))?
            .with_name("softlabel")
            .build()
            .map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", path.display()))?;
        tracing::debug!(library = %path.display(), "ONNX Runtime loaded");
        Ok((path, env))
    });
    match entry {
        Ok((_, env)) => Ok(env),
        Err(e) => Err(Error::Runtime(e.clone())),
    }
}

/// The path ONNX Runtime was loaded from, once [`environment`] succeeded.
pub fn loaded_library() -> Option<&'static Path> {
    ENVIRONMENT.get().and_then(|r| r.as_ref().ok()).map(|(p, _)| p.as_path())
}

/// The element types a teacher input may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputType {
    F32,
    F64,
    I32,
    I64,
    U8,
}

/// Settings for loading a teacher.
#[derive(Debug, Clone, Default)]
pub struct TeacherOptions {
    /// ONNX Runtime intra-op threads (0: ONNX Runtime's default).
    pub threads: usize,
    /// Explicit ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
    /// The input to feed, for models with several (default: the only one).
    pub input_name: Option<String>,
    /// The output to read, for models with several (default: the first).
    pub output_name: Option<String>,
    /// What the output holds (default: detected on the first batch).
    pub output_kind: OutputKind,
}

/// What a teacher's output holds. softlabel stores logits; probabilities p become log p, and
/// log-probabilities are logits already (both give back p under softmax). log 0 = -inf is kept: it
/// softmaxes to exactly 0 and never turns into NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// Detect on the first batch: rows of non-negative values summing to 1 are probabilities; rows of
    /// non-positive values whose exponentials sum to 1 are log-probabilities; anything else logits.
    #[default]
    Auto,
    /// Raw scores (softmax not applied).
    Logits,
    /// Probabilities (softmax applied).
    Probs,
    /// Log-probabilities (log-softmax applied).
    LogProbs,
}

impl OutputKind {
    /// What `rows` (row-major, `k` per row) look like, for [`OutputKind::Auto`].
    pub fn detect(values: &[f32], k: usize) -> OutputKind {
        let rows = || values.chunks_exact(k.max(1));
        let sums_to_one = |s: f64| (s - 1.0).abs() < 1e-3;
        if values.is_empty() {
            OutputKind::Logits
        } else if rows().all(|r| r.iter().all(|&v| v >= 0.0) && sums_to_one(r.iter().map(|&v| f64::from(v)).sum())) {
            OutputKind::Probs
        } else if rows()
            .all(|r| r.iter().all(|&v| v <= 0.0) && sums_to_one(r.iter().map(|&v| f64::from(v).exp()).sum()))
        {
            OutputKind::LogProbs
        } else {
            OutputKind::Logits
        }
    }

    /// Converts `values` of this kind to logits in place.
    pub fn to_logits(self, values: &mut [f32]) {
        if self == OutputKind::Probs {
            values.iter_mut().for_each(|v| *v = v.ln());
        }
    }
}

/// A loaded teacher model.
pub struct Teacher {
    path: PathBuf,
    session: Session,
    sha256: String,
    input_name: String,
    input_type: InputType,
    /// The declared input shape; -1 marks a dynamic dimension. Dimension 0 is the batch.
    input_shape: Vec<i64>,
    output_name: String,
    num_classes: Option<usize>,
    /// `Auto` until the first batch decides.
    output_kind: OutputKind,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("path", &self.path)
            .field("input", &self.input_name)
            .field("input_shape", &self.input_shape)
            .field("output", &self.output_name)
            .finish()
    }
}

fn shape_string(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d < 0 {
                if i == 0 {
                    "batch".into()
                } else {
                    "?".into()
                }
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// The ONNX Runtime session options every teacher is loaded with: full graph optimisation, no
/// spin-waiting (it slows the reader and writer threads beside inference), `options.threads` intra-op
/// threads. Public so benchmarks can time raw ONNX Runtime with exactly the same options.
pub fn session_builder(options: &TeacherOptions) -> Result<ort::session::builder::SessionBuilder> {
    let env = environment(options.ort_lib.as_deref())?;
    let rt = |e: ort::Error<ort::session::builder::SessionBuilder>| {
        Error::Runtime(format!("ONNX Runtime session options: {e}"))
    };
    let mut builder = Session::builder(env)
        .map_err(|e| Error::Runtime(format!("ONNX Runtime: {e}")))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(rt)?
        .with_intra_op_spinning(false)
        .map_err(rt)?
        .with_inter_op_spinning(false)
        .map_err(rt)?;
    if options.threads > 0 {
        builder = builder.with_intra_threads(options.threads).map_err(rt)?;
    }
    Ok(builder)
}

impl Teacher {
    /// Loads `path`, checking it has one tensor input of a supported type and one tensor output.
    pub fn load(path: &Path, options: &TeacherOptions) -> Result<Self> {
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if bytes.len() == 0 {
            return Err(Error::model(path, "file is empty, not an ONNX model"));
        }
        let sha256 = sha256_file(path)?;
        let session = session_builder(options)?
            .commit_from_file(path)
            .map_err(|e| Error::model(path, format!("cannot load as an ONNX model: {e}")))?;

        let inputs = session.inputs();
        let names = |outlets: &[ort::value::Outlet]| {
            outlets.iter().map(|i| i.name().to_string()).collect::<Vec<_>>().join(", ")
        };
        let input = match &options.input_name {
            Some(name) => inputs.iter().find(|i| i.name() == name).ok_or_else(|| {
                Error::model(path, format!("--input-name '{name}': the teacher's inputs are {}", names(inputs)))
            })?,
            None if inputs.len() == 1 => &inputs[0],
            None => {
                return Err(Error::model(
                    path,
                    format!(
                        "teacher has {} inputs ({}), softlabel feeds exactly one: choose it with --input-name",
                        inputs.len(),
                        names(inputs)
                    ),
                ))
            }
        };
        let (ty, shape) = match input.dtype() {
            ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
            other => return Err(Error::model(path, format!("input '{}' is {other:?}, not a tensor", input.name()))),
        };
        let input_type = match ty {
            TensorElementType::Float32 => InputType::F32,
            TensorElementType::Int32 => InputType::I32,
            TensorElementType::Int64 => InputType::I64,
            TensorElementType::Float64 => InputType::F64,
            TensorElementType::Uint8 => InputType::U8,
            other => {
                return Err(Error::model(
                    path,
                    format!(
                    "input '{}' has element type {other:?}; softlabel feeds float32, float64, int32, int64 or uint8",
                    input.name()
                ),
                ))
            }
        };
        if shape.is_empty() {
            return Err(Error::model(path, format!("input '{}' is a scalar; expected [batch, ...]", input.name())));
        }
        let outputs = session.outputs();
        let output = match &options.output_name {
            Some(name) => outputs.iter().find(|o| o.name() == name).ok_or_else(|| {
                Error::model(path, format!("--output-name '{name}': the teacher's outputs are {}", names(outputs)))
            })?,
            None => outputs.first().ok_or_else(|| Error::model(path, "teacher has no outputs"))?,
        };
        let num_classes = match output.dtype() {
            ValueType::Tensor { shape, ty, .. } => {
                if !matches!(ty, TensorElementType::Float32 | TensorElementType::Float64) {
                    return Err(Error::model(
                        path,
                        format!("output '{}' has element type {ty:?}, expected float logits", output.name()),
                    ));
                }
                if shape.len() != 2 {
                    return Err(Error::model(
                        path,
                        format!(
                            "output '{}' has shape {}, expected [batch, classes]",
                            output.name(),
                            shape_string(shape)
                        ),
                    ));
                }
                (shape[1] > 0).then_some(shape[1] as usize)
            }
            other => return Err(Error::model(path, format!("output '{}' is {other:?}, not a tensor", output.name()))),
        };
        Ok(Teacher {
            path: path.to_path_buf(),
            sha256,
            input_name: input.name().to_string(),
            output_name: output.name().to_string(),
            input_type,
            input_shape: shape,
            num_classes,
            output_kind: options.output_kind,
            session,
        })
    }

    /// What the output holds (`Auto` until the first batch ran).
    pub fn output_kind(&self) -> OutputKind {
        self.output_kind
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sha256 of the model file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The output's name.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The declared input shape (-1: dynamic).
    pub fn input_shape(&self) -> &[i64] {
        &self.input_shape
    }

    /// Number of classes when the model declares it.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// The per-row shape the teacher gets for rows of `width` values (the input shape without the batch
    /// dimension, dynamic dimensions resolved). An error names both shapes when they cannot match.
    pub fn row_shape(&self, width: usize, column: &str) -> Result<Vec<usize>> {
        let rest = &self.input_shape[1..];
        let known: i64 = rest.iter().filter(|&&d| d >= 0).product();
        let dynamic = rest.iter().filter(|&&d| d < 0).count();
        let mismatch = || {
            Error::model(
                &self.path,
                format!(
                    "data column '{column}' has {width} values per row, but teacher input '{}' has shape {}{}",
                    self.input_name,
                    shape_string(&self.input_shape),
                    if dynamic == 0 { format!(" ({known} values per row)") } else { String::new() }
                ),
            )
        };
        match dynamic {
            0 if known as usize == width => Ok(rest.iter().map(|&d| d as usize).collect()),
            1 if known > 0 && width.is_multiple_of(known as usize) => {
                let fill = width / known as usize;
                Ok(rest.iter().map(|&d| if d < 0 { fill } else { d as usize }).collect())
            }
            _ => Err(mismatch()),
        }
    }

    /// The batch size the model requires, if its batch dimension is fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        (self.input_shape[0] > 0).then_some(self.input_shape[0] as usize)
    }

    /// Runs the teacher on a batch, returning row-major logits `[rows, classes]` and the class count.
    pub fn run(&mut self, batch: &Batch, row_shape: &[usize]) -> Result<(Vec<f32>, usize)> {
        let rows = batch.len();
        match self.input_type {
            InputType::F32 => {
                let v =
                    numeric_to_f32(batch.input.as_ref()).ok_or_else(|| Error::Internal("input not numeric".into()))?;
                self.run_typed(&v, rows, row_shape)
            }
            InputType::I32 => {
                let v =
                    numeric_to_i32(batch.input.as_ref()).ok_or_else(|| Error::Internal("input not numeric".into()))?;
                self.run_typed(&v, rows, row_shape)
            }
            InputType::I64 => {
                let v =
                    numeric_to_i64(batch.input.as_ref()).ok_or_else(|| Error::Internal("input not numeric".into()))?;
                self.run_typed(&v, rows, row_shape)
            }
            InputType::F64 => {
                let v =
                    numeric_to_f64(batch.input.as_ref()).ok_or_else(|| Error::Internal("input not numeric".into()))?;
                self.run_typed(&v, rows, row_shape)
            }
            InputType::U8 => {
                let v = numeric_to_u8(batch.input.as_ref()).map_err(|(i, v)| {
                    Error::data(
                        &batch.file,
                        format!(
                            "row {}: input value {v} does not fit the teacher's uint8 input",
                            batch.first_row + (i / batch.width.max(1)) as u64
                        ),
                    )
                })?;
                self.run_typed(&v, rows, row_shape)
            }
        }
    }

    fn run_typed<T: PrimitiveTensorElementType + Clone + Default + std::fmt::Debug + 'static>(
        &mut self,
        values: &[T],
        rows: usize,
        row_shape: &[usize],
    ) -> Result<(Vec<f32>, usize)> {
        let width: usize = row_shape.iter().product();
        let chunk = self.fixed_batch().unwrap_or(rows.max(1));
        let mut logits = Vec::new();
        let mut classes = 0;
        let mut start = 0;
        while start < rows {
            let n = chunk.min(rows - start);
            let mut padded;
            let data = if n < chunk {
                // A fixed-batch model gets the last rows padded with zeros; their outputs are dropped.
                padded = values[start * width..(start + n) * width].to_vec();
                padded.resize(chunk * width, T::default());
                &padded[..]
            } else {
                &values[start * width..(start + n) * width]
            };
            let mut shape = vec![chunk];
            shape.extend_from_slice(row_shape);
            let tensor = TensorRef::from_array_view((shape, data))
                .map_err(|e| Error::Runtime(format!("cannot build the input tensor: {e}")))?;
            let outputs = self
                .session
                .run(ort::inputs![self.input_name.as_str() => tensor])
                .map_err(|e| Error::model(&self.path, format!("inference failed: {e}")))?;
            let out = &outputs[self.output_name.as_str()];
            let (oshape, flat): (Vec<i64>, Vec<f32>) = if let Ok((s, v)) = out.try_extract_tensor::<f32>() {
                (s.to_vec(), v.to_vec())
            } else if let Ok((s, v)) = out.try_extract_tensor::<f64>() {
                (s.to_vec(), v.iter().map(|&x| x as f32).collect())
            } else {
                return Err(Error::model(&self.path, format!("output '{}' is not a float tensor", self.output_name)));
            };
            if oshape.len() != 2 || oshape[0] as usize != chunk || oshape[1] <= 0 {
                return Err(Error::model(
                    &self.path,
                    format!(
                        "output '{}' has shape {:?} for a batch of {chunk}, expected [{chunk}, classes]",
                        self.output_name, oshape
                    ),
                ));
            }
            classes = oshape[1] as usize;
            logits.extend_from_slice(&flat[..n * classes]);
            start += n;
        }
        if self.output_kind == OutputKind::Auto {
            self.output_kind = OutputKind::detect(&logits, classes);
            tracing::info!(teacher = %self.path.display(), kind = ?self.output_kind, "teacher output detected");
        }
        self.output_kind.to_logits(&mut logits);
        Ok((logits, classes))
    }
}

/// How an ensemble combines its members' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The mean of the members' logits.
    #[default]
    MeanLogits,
    /// The log of the mean of the members' probabilities (softmax at T = 1).
    MeanProbs,
}

/// The sha256 identifying teachers with these model hashes: the model's own for one, else a hash of the
/// combination and every member's sha256 in order.
pub fn ensemble_sha256(shas: &[String], combine: Combine) -> String {
    if shas.len() == 1 {
        return shas[0].clone();
    }
    let name = match combine {
        Combine::MeanLogits => "mean-logits",
        Combine::MeanProbs => "mean-probs",
    };
    let mut text = format!("softlabel-ensemble {name}\n");
    for s in shas {
        text.push_str(s);
        text.push('\n');
    }
    crate::dataset::sha256_hex(text.as_bytes())
}

/// One or more teachers run on the same rows; their outputs combined per [`Combine`].
#[derive(Debug)]
pub struct Ensemble {
    members: Vec<Teacher>,
    row_shapes: Vec<Vec<usize>>,
    combine: Combine,
}

impl Ensemble {
    /// Loads every model.
    pub fn load(paths: &[PathBuf], options: &TeacherOptions, combine: Combine) -> Result<Self> {
        if paths.is_empty() {
            return Err(Error::Config("at least one --teacher is needed".into()));
        }
        let members = paths.iter().map(|p| Teacher::load(p, options)).collect::<Result<Vec<_>>>()?;
        Ok(Ensemble { members, row_shapes: Vec::new(), combine })
    }

    /// The members.
    pub fn members(&self) -> &[Teacher] {
        &self.members
    }

    /// How outputs are combined.
    pub fn combine(&self) -> Combine {
        self.combine
    }

    /// The first member (named in errors that concern the whole ensemble).
    pub fn first(&self) -> &Teacher {
        &self.members[0]
    }

    /// Resolves every member's per-row shape for rows of `width` values; returns the first member's.
    pub fn prepare(&mut self, width: usize, column: &str) -> Result<Vec<usize>> {
        self.row_shapes = self.members.iter().map(|m| m.row_shape(width, column)).collect::<Result<_>>()?;
        Ok(self.row_shapes[0].clone())
    }

    /// sha256 identifying the teacher: the model's, or for an ensemble a hash of the combination and
    /// every member's sha256 in order.
    pub fn sha256(&self) -> String {
        let shas: Vec<String> = self.members.iter().map(|m| m.sha256().to_string()).collect();
        ensemble_sha256(&shas, self.combine)
    }

    /// Runs every member and combines their logits; row-major `[rows, classes]`.
    pub fn run(&mut self, batch: &Batch) -> Result<(Vec<f32>, usize)> {
        let n = self.members.len();
        if n == 1 {
            return self.members[0].run(batch, &self.row_shapes[0]);
        }
        let mut combined: Vec<f64> = Vec::new();
        let mut classes = 0;
        for (i, member) in self.members.iter_mut().enumerate() {
            let (logits, k) = member.run(batch, &self.row_shapes[i])?;
            if i == 0 {
                classes = k;
                combined = vec![0.0; logits.len()];
            } else if k != classes {
                return Err(Error::model(
                    member.path(),
                    format!("has {k} classes, the first teacher {classes}: ensemble members must agree"),
                ));
            }
            match self.combine {
                Combine::MeanLogits => {
                    combined.iter_mut().zip(&logits).for_each(|(c, &z)| *c += f64::from(z) / n as f64)
                }
                Combine::MeanProbs => {
                    let mut p = vec![0f32; k];
                    for (row, out) in logits.chunks_exact(k).zip(combined.chunks_exact_mut(k)) {
                        crate::soften::softmax_t(row, 1.0, &mut p);
                        out.iter_mut().zip(&p).for_each(|(c, &q)| *c += f64::from(q) / n as f64);
                    }
                }
            }
        }
        let out = match self.combine {
            Combine::MeanLogits => combined.into_iter().map(|v| v as f32).collect(),
            Combine::MeanProbs => combined.into_iter().map(|v| v.ln() as f32).collect(),
        };
        Ok((out, classes))
    }
}
