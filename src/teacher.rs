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

impl Teacher {
    /// Loads `path`, checking it has one tensor input of a supported type and one tensor output.
    pub fn load(path: &Path, options: &TeacherOptions) -> Result<Self> {
        let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if bytes.len() == 0 {
            return Err(Error::model(path, "file is empty, not an ONNX model"));
        }
        let sha256 = sha256_file(path)?;
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
        let session = builder
            .commit_from_file(path)
            .map_err(|e| Error::model(path, format!("cannot load as an ONNX model: {e}")))?;

        let inputs = session.inputs();
        if inputs.len() != 1 {
            let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
            return Err(Error::model(
                path,
                format!("teacher has {} inputs ({}), softlabel feeds exactly one", inputs.len(), names.join(", ")),
            ));
        }
        let input = &inputs[0];
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
        let output = outputs.first().ok_or_else(|| Error::model(path, "teacher has no outputs"))?;
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
            session,
        })
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
        Ok((logits, classes))
    }
}
