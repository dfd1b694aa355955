//! One ONNX model in an ONNX Runtime session: its input and output, shapes and types, and running it on
//! a batch.

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::session::SessionInputValue;
use ort::value::{PrimitiveTensorElementType, Tensor, TensorElementType, TensorRef, ValueType};

use super::runtime::environment;
use super::{OutputKind, TeacherOptions};
use crate::data::{numeric_to_f32, numeric_to_f64, numeric_to_i32, numeric_to_i64, numeric_to_u8, Batch};
use crate::error::{Error, Result};

/// The element types a teacher input may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputType {
    F32,
    F64,
    I32,
    I64,
    U8,
}

impl InputType {
    fn of(ty: TensorElementType) -> Option<InputType> {
        Some(match ty {
            TensorElementType::Float32 => InputType::F32,
            TensorElementType::Int32 => InputType::I32,
            TensorElementType::Int64 => InputType::I64,
            TensorElementType::Float64 => InputType::F64,
            TensorElementType::Uint8 => InputType::U8,
            _ => return None,
        })
    }

    fn element_type(self) -> crate::data::ElementType {
        use crate::data::ElementType;
        match self {
            InputType::F32 => ElementType::F32,
            InputType::F64 => ElementType::F64,
            InputType::I32 => ElementType::I32,
            InputType::I64 => ElementType::I64,
            InputType::U8 => ElementType::U8,
        }
    }
}

/// One input the teacher is fed: its name, element type and declared shape.
#[derive(Debug, Clone)]
struct ModelInput {
    name: String,
    ty: InputType,
    /// The declared shape; -1 marks a dynamic dimension. Dimension 0 is the batch.
    shape: Vec<i64>,
}

/// A loaded teacher model.
pub struct Teacher {
    path: PathBuf,
    session: Session,
    sha256: String,
    /// The inputs fed: the data's input first, then [`TeacherOptions::extra_inputs`] in order.
    inputs: Vec<ModelInput>,
    output_name: String,
    num_classes: Option<usize>,
    /// `Auto` until the first batch decides.
    output_kind: OutputKind,
    /// Intermediate values returned beside the logits, and how they are reduced.
    features: Vec<Feature>,
    /// The features of the last [`Teacher::run`], one `rows * width` vector each.
    last_features: Vec<Vec<f32>>,
    /// An output of rank 3, `[batch, positions, classes]`: a sequence teacher.
    sequence: bool,
    /// The attention-mask input fed from the data's input, and the pad id it masks.
    mask: Option<(ModelInput, i64)>,
}

/// One intermediate value stored as a feature.
#[derive(Debug, Clone)]
struct Feature {
    name: String,
    pool: super::FeaturePool,
    dim: Option<usize>,
    seed: u64,
    /// The shape of a row as the model gives it (known after the first batch).
    shape: Option<Vec<usize>>,
    /// The projection matrix `[pooled width, dim]`, row-major (built on the first batch).
    projection: Option<Vec<f32>>,
}

/// What a stored feature is, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureShape {
    /// The value's name in the model.
    pub name: String,
    /// A row's shape as the model computes it.
    pub shape: Vec<usize>,
    /// Values stored per row.
    pub width: usize,
}

impl std::fmt::Debug for Teacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teacher")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
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
    /// The ONNX Runtime session for `path`: from the file, or, with `--features`, from `model` (its bytes)
    /// with the features made graph outputs (ONNX Runtime returns graph outputs only).
    fn session(path: &Path, model: Option<&[u8]>, options: &TeacherOptions) -> Result<Session> {
        let session = match model {
            None => session_builder(options)?.commit_from_file(path),
            Some(model) => {
                let values = super::graph::node_values(model, path)?;
                for f in &options.features {
                    if !values.iter().any(|v| v.name == *f) {
                        return Err(Error::model(
                            path,
                            format!("--features '{f}': the model computes no value of that name (softlabel inspect-teacher lists them)"),
                        ));
                    }
                }
                let extra: Vec<&str> = options
                    .features
                    .iter()
                    .filter(|f| !values.iter().any(|v| v.name == **f && v.is_output))
                    .map(String::as_str)
                    .collect();
                let edited = super::graph::with_outputs(model, &extra, path)?;
                session_builder(options)?.commit_from_memory(&edited)
            }
        };
        session.map_err(|e| Error::model(path, format!("cannot load as an ONNX model: {e}")))
    }

    /// Loads `path`, checking the inputs fed (one, or [`TeacherOptions::extra_inputs`] too) are tensors of
    /// supported types and that the output is a tensor of float logits.
    pub fn load(path: &Path, options: &TeacherOptions) -> Result<Self> {
        // A regular file (a FIFO or /dev/zero would be read forever), hashed through the opened file.
        let (file, bytes) = crate::util::open_regular(path, crate::util::Links::Follow)?;
        if bytes == 0 {
            return Err(Error::model(path, "file is empty, not an ONNX model"));
        }
        let model = if options.features.is_empty() {
            None
        } else {
            // Read once, through the opened file: the bytes are both hashed and edited.
            if bytes > super::graph::MAX_MODEL_BYTES {
                return Err(Error::model(
                    path,
                    format!(
                        "is {bytes} bytes; a model read to expose features is at most {}",
                        super::graph::MAX_MODEL_BYTES
                    ),
                ));
            }
            let mut model = Vec::with_capacity(bytes as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(&file, bytes), &mut model)
                .map_err(|e| Error::io(path, e))?;
            Some(model)
        };
        // The model is hashed on a second thread while ONNX Runtime loads and builds the session: the
        // hash reads the whole file (37 ms of CPU for a 32 MB teacher, perf), the session does not wait.
        let (model, file) = (model.as_deref(), &file);
        let hash = move || match model {
            None => crate::util::sha256_of(file, path),
            Some(m) => Ok(crate::util::sha256_hex(m)),
        };
        let (sha256, session) = std::thread::scope(|scope| {
            let hashing = std::thread::Builder::new().name("sl-hash-model".into()).spawn_scoped(scope, hash);
            let session = Self::session(path, model, options);
            let sha256 = match hashing {
                Ok(h) => {
                    h.join().unwrap_or_else(|_| Err(Error::Internal("the model's hashing thread panicked".into())))
                }
                Err(_) => hash(), // no thread to be had: hashed here
            };
            (sha256, session)
        });
        let (sha256, session) = (sha256?, session?);

        let inputs = session.inputs();
        let names = |outlets: &[ort::value::Outlet]| {
            outlets.iter().map(|i| i.name().to_string()).collect::<Vec<_>>().join(", ")
        };
        let input = match &options.input_name {
            Some(name) => inputs.iter().find(|i| i.name() == name).ok_or_else(|| {
                Error::model(path, format!("--input-name '{name}': the teacher's inputs are {}", names(inputs)))
            })?,
            None if inputs.len() == 1 => &inputs[0],
            // A sequence teacher of ids and an attention mask fed from them: the ids are the other input.
            None if inputs.len() == 2 && options.mask_input.is_some() => {
                inputs.iter().find(|i| Some(i.name()) != options.mask_input.as_deref()).unwrap_or(&inputs[0])
            }
            None => {
                return Err(Error::model(
                    path,
                    format!(
                        "teacher has {} inputs ({}): map each to a data column with --input NAME=COLUMN (the first \
                         is the input the student learns from), or feed one with --input-name",
                        inputs.len(),
                        names(inputs)
                    ),
                ))
            }
        };
        let mut fed = vec![model_input(path, input)?];
        let mask = match (&options.mask_input, options.pad_id) {
            (Some(name), Some(pad)) => {
                let m = inputs.iter().find(|i| i.name() == name).ok_or_else(|| {
                    Error::model(path, format!("--mask-input '{name}': the teacher's inputs are {}", names(inputs)))
                })?;
                if m.name() == fed[0].name || options.extra_inputs.iter().any(|e| e == name) {
                    return Err(Error::Config(format!("teacher input '{name}' is fed twice (--mask-input)")));
                }
                Some((model_input(path, m)?, pad))
            }
            (Some(_), None) => {
                return Err(Error::Config(
                    "--mask-input needs --pad-id: the mask marks the tokens that are not padding".into(),
                ))
            }
            (None, _) => None,
        };
        for name in &options.extra_inputs {
            let extra = inputs.iter().find(|i| i.name() == name).ok_or_else(|| {
                Error::model(
                    path,
                    format!("--input {name}=...: the teacher has no input '{name}' (its inputs: {})", names(inputs)),
                )
            })?;
            if fed.iter().any(|f| f.name == *name) {
                return Err(Error::Config(format!("teacher input '{name}' is fed twice (--input)")));
            }
            fed.push(model_input(path, extra)?);
        }
        // Every input the model declares must be fed: ONNX Runtime would fail on the first batch.
        let unfed: Vec<&str> = inputs
            .iter()
            .map(|i| i.name())
            .filter(|n| !fed.iter().chain(mask.as_ref().map(|m| &m.0)).any(|f| f.name == *n))
            .collect();
        if !unfed.is_empty() {
            return Err(Error::model(
                path,
                format!(
                    "teacher inputs {} are not fed: map each to a data column with --input NAME=COLUMN",
                    unfed.join(", ")
                ),
            ));
        }
        let outputs = session.outputs();
        let output = match &options.output_name {
            Some(name) => outputs.iter().find(|o| o.name() == name).ok_or_else(|| {
                Error::model(path, format!("--output-name '{name}': the teacher's outputs are {}", names(outputs)))
            })?,
            None => outputs.first().ok_or_else(|| Error::model(path, "teacher has no outputs"))?,
        };
        let sequence;
        let num_classes = match output.dtype() {
            ValueType::Tensor { shape, ty, .. } => {
                if !matches!(ty, TensorElementType::Float32 | TensorElementType::Float64) {
                    return Err(Error::model(
                        path,
                        format!("output '{}' has element type {ty:?}, expected float logits", output.name()),
                    ));
                }
                if shape.len() != 2 && shape.len() != 3 {
                    return Err(Error::model(
                        path,
                        format!(
                            "output '{}' has shape {}, expected [batch, classes] or, for a sequence teacher, [batch, \
                             positions, classes]",
                            output.name(),
                            shape_string(shape)
                        ),
                    ));
                }
                sequence = shape.len() == 3;
                let classes = shape[shape.len() - 1];
                (classes > 0).then_some(classes as usize)
            }
            other => return Err(Error::model(path, format!("output '{}' is {other:?}, not a tensor", output.name()))),
        };
        Ok(Teacher {
            path: path.to_path_buf(),
            sha256,
            inputs: fed,
            output_name: output.name().to_string(),
            num_classes,
            output_kind: options.output_kind,
            features: options
                .features
                .iter()
                .enumerate()
                .map(|(i, name)| Feature {
                    name: name.clone(),
                    pool: options.feature_pool,
                    dim: options.feature_dim,
                    seed: options.feature_seed ^ ((i as u64) << 48),
                    shape: None,
                    projection: None,
                })
                .collect(),
            last_features: Vec::new(),
            sequence,
            mask,
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

    /// The features of the last [`Teacher::run`] (one `rows * width` vector per feature), taken.
    pub fn take_features(&mut self) -> Vec<Vec<f32>> {
        std::mem::take(&mut self.last_features)
    }

    /// The stored features' shapes (known once a batch ran).
    pub fn feature_shapes(&self) -> Vec<FeatureShape> {
        self.features
            .iter()
            .filter_map(|f| {
                let shape = f.shape.clone()?;
                let width = f.dim.unwrap_or_else(|| pooled_width(&shape, f.pool));
                Some(FeatureShape { name: f.name.clone(), shape, width })
            })
            .collect()
    }

    /// The name of the input the data's input column feeds.
    pub fn input_name(&self) -> &str {
        &self.inputs[0].name
    }

    /// The further inputs fed (after the first): name, element type and declared shape (-1: dynamic).
    pub fn extra_inputs(&self) -> Vec<(String, crate::data::ElementType, Vec<i64>)> {
        self.inputs[1..].iter().map(|i| (i.name.clone(), i.ty.element_type(), i.shape.clone())).collect()
    }

    /// The output's name.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The declared input shape (-1: dynamic).
    pub fn input_shape(&self) -> &[i64] {
        &self.inputs[0].shape
    }

    /// The element type the model's input declares.
    pub fn input_element_type(&self) -> crate::data::ElementType {
        self.inputs[0].ty.element_type()
    }

    /// Number of classes when the model declares it.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// The per-row shape the teacher gets for rows of `width` values (the input shape without the batch
    /// dimension, dynamic dimensions resolved). An error names both shapes when they cannot match.
    pub fn row_shape(&self, width: usize, column: &str) -> Result<Vec<usize>> {
        self.row_shape_of(0, width, column)
    }

    /// [`Teacher::row_shape`] for the fed input `input` (0: the data's input; then the extra inputs).
    fn row_shape_of(&self, input: usize, width: usize, column: &str) -> Result<Vec<usize>> {
        let ModelInput { name, shape, .. } = &self.inputs[input];
        let rest = &shape[1..];
        // Checked: a model may declare dimensions whose product overflows (refused as a mismatch).
        let known: i64 = rest.iter().filter(|&&d| d >= 0).try_fold(1i64, |a, &d| a.checked_mul(d)).unwrap_or(-1);
        let dynamic = rest.iter().filter(|&&d| d < 0).count();
        let mismatch = || {
            Error::model(
                &self.path,
                format!(
                    "data column '{column}' has {width} values per row, but teacher input '{name}' has shape {}{}",
                    shape_string(shape),
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

    /// Whether the output has rank 3, `[batch, positions, classes]`: [`Teacher::run`] then returns one
    /// row of logits per position, `[rows * positions, classes]`.
    pub fn is_sequence(&self) -> bool {
        self.sequence
    }

    /// The attention-mask input fed from the data (`--mask-input`), if any.
    pub fn mask_input(&self) -> Option<&str> {
        self.mask.as_ref().map(|(m, _)| m.name.as_str())
    }

    /// The batch size the model requires, if its batch dimension is fixed.
    pub fn fixed_batch(&self) -> Option<usize> {
        let first = self.inputs[0].shape[0];
        (first > 0).then_some(first as usize)
    }

    /// Runs the teacher on a batch, returning row-major logits `[rows, classes]` and the class count.
    /// `row_shape` is the data input's ([`Teacher::row_shape`]); further inputs come from
    /// [`Batch::extra`], each converted to the element type its model input declares.
    pub fn run(&mut self, batch: &Batch, row_shape: &[usize]) -> Result<(super::Logits, usize)> {
        let rows = batch.len();
        if self.inputs.len() > 1 && batch.extra.len() + 1 != self.inputs.len() {
            return Err(Error::Internal(format!(
                "batch carries {} inputs, teacher is fed {}",
                batch.extra.len() + 1,
                self.inputs.len()
            )));
        }
        let mut feeds = Vec::with_capacity(self.inputs.len());
        feeds.push(Feed::convert(self.inputs[0].ty, batch.input.as_ref(), batch, batch.width, row_shape.to_vec())?);
        for (i, e) in batch.extra.iter().enumerate().take(self.inputs.len() - 1) {
            let shape = self.row_shape_of(i + 1, e.width, &e.column)?;
            feeds.push(Feed::convert(self.inputs[i + 1].ty, e.values.as_ref(), batch, e.width, shape)?);
        }
        if let Some((input, pad)) = &self.mask {
            // 1 where a token is, 0 at padding, in the mask input's element type.
            let tokens = numeric_to_i64(batch.input.as_ref())
                .ok_or_else(|| Error::Internal("a sequence teacher's input is not integer".into()))?;
            let mask: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::Int64Array::from_iter_values(
                tokens.iter().map(|t| i64::from(t != pad)),
            ));
            feeds.push(Feed::convert(input.ty, mask.as_ref(), batch, batch.width, row_shape.to_vec())?);
        }
        let fed: Vec<&ModelInput> = self.inputs.iter().chain(self.mask.as_ref().map(|m| &m.0)).collect();
        let positions: usize = if self.sequence { row_shape.first().copied().unwrap_or(1) } else { 1 };
        let chunk = self.fixed_batch().unwrap_or(rows.max(1));
        let mut logits: Vec<f32> = Vec::new();
        let mut whole: Option<super::Logits> = None;
        let mut features: Vec<Vec<f32>> = vec![Vec::new(); self.features.len()];
        let mut classes = 0;
        let mut start = 0;
        while start < rows {
            let n = chunk.min(rows - start);
            let mut values = Vec::with_capacity(feeds.len());
            for (input, feed) in fed.iter().zip(&feeds) {
                values.push((input.name.as_str(), feed.value(start, n, chunk)?));
            }
            let mut outputs =
                self.session.run(values).map_err(|e| Error::model(&self.path, format!("inference failed: {e}")))?;
            let oshape = float_shape(&outputs[self.output_name.as_str()]).ok_or_else(|| {
                Error::model(&self.path, format!("output '{}' is not a float tensor", self.output_name))
            })?;
            let expected = if self.sequence { vec![chunk as i64, positions as i64] } else { vec![chunk as i64] };
            if oshape.len() != expected.len() + 1
                || oshape[..expected.len()] != expected[..]
                || oshape[expected.len()] <= 0
            {
                let want = if self.sequence {
                    format!("[{chunk}, {positions}, classes]")
                } else {
                    format!("[{chunk}, classes]")
                };
                return Err(Error::model(
                    &self.path,
                    format!(
                        "output '{}' has shape {:?} for a batch of {chunk}, expected {want}",
                        self.output_name, oshape
                    ),
                ));
            }
            classes = oshape[expected.len()] as usize;
            for (f, out) in self.features.iter_mut().zip(features.iter_mut()) {
                let (shape, values) = float_tensor(&outputs[f.name.as_str()])
                    .ok_or_else(|| Error::model(&self.path, format!("feature '{}' is not a float tensor", f.name)))?;
                f.reduce(&self.path, &shape, &values, n, chunk, out)?;
            }
            let len = n * positions * classes;
            let not_float = || Error::model(&self.path, format!("output '{}' is not a float tensor", self.output_name));
            let tensor = outputs.remove(self.output_name.as_str()).ok_or_else(not_float)?;
            // The whole batch in one call: a float32 output is kept where ONNX Runtime wrote it.
            let rest = match n == rows && n == chunk {
                true => super::Logits::from_tensor(tensor, len).map(|l| whole = Some(l)).err(),
                false => Some(tensor),
            };
            if let Some(tensor) = rest {
                let (_, flat) = float_tensor(&tensor).ok_or_else(not_float)?;
                logits.extend_from_slice(&flat[..len]);
            }
            start += n;
        }
        self.last_features = features;
        let mut logits = whole.unwrap_or_else(|| logits.into());
        if self.output_kind == OutputKind::Auto {
            self.output_kind = OutputKind::detect(&logits, classes);
            tracing::info!(teacher = %self.path.display(), kind = ?self.output_kind, "teacher output detected");
        }
        self.output_kind.to_logits(&mut logits);
        Ok((logits, classes))
    }
}

/// The fed input `input` of the model at `path`: a tensor of a supported element type, not a scalar.
fn model_input(path: &Path, input: &ort::value::Outlet) -> Result<ModelInput> {
    let (ty, shape) = match input.dtype() {
        ValueType::Tensor { ty, shape, .. } => (*ty, shape.to_vec()),
        other => return Err(Error::model(path, format!("input '{}' is {other:?}, not a tensor", input.name()))),
    };
    let ty = InputType::of(ty).ok_or_else(|| {
        Error::model(
            path,
            format!(
                "input '{}' has element type {ty:?}; softlabel feeds float32, float64, int32, int64 or uint8",
                input.name()
            ),
        )
    })?;
    if shape.is_empty() {
        return Err(Error::model(path, format!("input '{}' is a scalar; expected [batch, ...]", input.name())));
    }
    Ok(ModelInput { name: input.name().to_string(), ty, shape })
}

/// One input's values for a batch, converted to the element type the model declares.
enum Feed {
    F32(Vec<f32>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
    I32(Vec<i32>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
    U8(Vec<u8>, Vec<usize>),
}

impl Feed {
    /// `values` (`width` a row, from `batch`) as `ty`, each row fed as `row_shape`.
    fn convert(
        ty: InputType,
        values: &dyn arrow_array::Array,
        batch: &Batch,
        width: usize,
        row_shape: Vec<usize>,
    ) -> Result<Feed> {
        let numeric = || Error::Internal("input not numeric".into());
        Ok(match ty {
            InputType::F32 => Feed::F32(numeric_to_f32(values).ok_or_else(numeric)?, row_shape),
            InputType::F64 => Feed::F64(numeric_to_f64(values).ok_or_else(numeric)?, row_shape),
            InputType::I32 => Feed::I32(numeric_to_i32(values).ok_or_else(numeric)?, row_shape),
            InputType::I64 => Feed::I64(numeric_to_i64(values).ok_or_else(numeric)?, row_shape),
            InputType::U8 => Feed::U8(
                numeric_to_u8(values).map_err(|(i, v)| {
                    Error::data(
                        &batch.file,
                        format!(
                            "row {}: input value {v} does not fit the teacher's uint8 input",
                            batch.first_row + (i / width.max(1)) as u64
                        ),
                    )
                })?,
                row_shape,
            ),
        })
    }

    /// Rows `start..start + n` as a tensor of `chunk` rows (a fixed-batch model gets the last rows padded
    /// with zeros; their outputs are dropped).
    fn value(&self, start: usize, n: usize, chunk: usize) -> Result<SessionInputValue<'_>> {
        fn slice<'a, T: PrimitiveTensorElementType + Clone + Default + std::fmt::Debug + 'static>(
            values: &'a [T],
            row_shape: &[usize],
            start: usize,
            n: usize,
            chunk: usize,
        ) -> Result<SessionInputValue<'a>> {
            let width: usize = row_shape.iter().product();
            let mut shape = vec![chunk];
            shape.extend_from_slice(row_shape);
            let rows = &values[start * width..(start + n) * width];
            let built = if n < chunk {
                let mut padded = rows.to_vec();
                padded.resize(chunk * width, T::default());
                Tensor::from_array((shape, padded)).map(SessionInputValue::from)
            } else {
                TensorRef::from_array_view((shape, rows)).map(SessionInputValue::from)
            };
            built.map_err(|e| Error::Runtime(format!("cannot build the input tensor: {e}")))
        }
        match self {
            Feed::F32(v, s) => slice(v, s, start, n, chunk),
            Feed::F64(v, s) => slice(v, s, start, n, chunk),
            Feed::I32(v, s) => slice(v, s, start, n, chunk),
            Feed::I64(v, s) => slice(v, s, start, n, chunk),
            Feed::U8(v, s) => slice(v, s, start, n, chunk),
        }
    }
}

/// Values a row of `shape` keeps after pooling.
fn pooled_width(shape: &[usize], pool: super::FeaturePool) -> usize {
    match (shape.len(), pool) {
        (0, _) => 1,
        (1, _) | (_, super::FeaturePool::None) => shape.iter().product(),
        (_, super::FeaturePool::Attention) => shape[1..].iter().product(),
        _ => shape[0],
    }
}

/// The most values a projection matrix may hold.
const MAX_PROJECTION: usize = 1 << 26;

impl Feature {
    /// Appends the first `n` of the `chunk` rows of `values` (shape `[chunk, ...]`), pooled and
    /// projected, to `out`.
    fn reduce(
        &mut self,
        path: &Path,
        shape: &[i64],
        values: &[f32],
        n: usize,
        chunk: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if shape.first().copied() != Some(chunk as i64) || shape.iter().any(|&d| d < 0) {
            return Err(Error::model(
                path,
                format!(
                    "feature '{}' has shape {shape:?} for a batch of {chunk}: its first dimension must be the batch",
                    self.name
                ),
            ));
        }
        let row: Vec<usize> = shape[1..].iter().map(|&d| d as usize).collect();
        match &self.shape {
            None => self.shape = Some(row.clone()),
            Some(s) if *s != row => {
                return Err(Error::model(
                    path,
                    format!("feature '{}' has rows of shape {row:?}, earlier batches {s:?}", self.name),
                ))
            }
            Some(_) => {}
        }
        let width: usize = row.iter().product();
        let pooled = pooled_width(&row, self.pool);
        if let (Some(d), None) = (self.dim, &self.projection) {
            if d == 0 || d >= pooled {
                return Err(Error::Config(format!(
                    "--feature-dim {d}: feature '{}' has {pooled} values a row; a projection must make it smaller",
                    self.name
                )));
            }
            if pooled.saturating_mul(d) > MAX_PROJECTION {
                return Err(Error::Config(format!("--feature-dim {d} x {pooled} values is a projection too large")));
            }
            self.projection = Some(projection(self.seed, pooled, d));
        }
        let mut buf = vec![0f32; pooled];
        for r in 0..n {
            let x = &values[r * width..(r + 1) * width];
            match (row.len(), self.pool) {
                (0 | 1, _) | (_, super::FeaturePool::None) => buf.copy_from_slice(x),
                (_, super::FeaturePool::Attention) => {
                    for (b, q) in buf.iter_mut().zip(crate::soften::attention_map(x, row[0])) {
                        *b = q as f32;
                    }
                }
                (_, pool) => {
                    let per = width / pooled.max(1);
                    for (c, b) in buf.iter_mut().enumerate() {
                        let cell = &x[c * per..(c + 1) * per];
                        *b = match pool {
                            super::FeaturePool::Max => cell.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                            _ => (cell.iter().map(|&v| f64::from(v)).sum::<f64>() / per.max(1) as f64) as f32,
                        };
                    }
                }
            }
            match (&self.projection, self.dim) {
                (Some(p), Some(d)) => {
                    for j in 0..d {
                        let s: f64 = buf.iter().enumerate().map(|(i, &v)| f64::from(v) * f64::from(p[i * d + j])).sum();
                        out.push(s as f32);
                    }
                }
                _ => out.extend_from_slice(&buf),
            }
        }
        Ok(())
    }
}

/// The random projection `[width, dim]` of a feature, row-major: entry (i, j) is z / sqrt(dim) with z a
/// standard normal from two uniforms, u_a = ((splitmix64(seed + 2k) >> 11) + 1) / 2^53 and
/// u_b = (splitmix64(seed + 2k + 1) >> 11) / 2^53 for k = i * dim + j, by Box-Muller:
/// z = sqrt(-2 ln u_a) cos(2 pi u_b) (computed in f64, stored as f32). SCHEMA.md records the rule.
pub fn projection(seed: u64, width: usize, dim: usize) -> Vec<f32> {
    let scale = 1.0 / (dim as f64).sqrt();
    (0..width * dim)
        .map(|k| {
            let k = k as u64;
            let a = crate::util::splitmix64(seed.wrapping_add(2 * k));
            let b = crate::util::splitmix64(seed.wrapping_add(2 * k + 1));
            let ua = ((a >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let ub = (b >> 11) as f64 / (1u64 << 53) as f64;
            ((-2.0 * ua.ln()).sqrt() * (2.0 * std::f64::consts::PI * ub).cos() * scale) as f32
        })
        .collect()
}

/// A float32 or float64 tensor's shape and values (as f32).
/// A float32 or float64 tensor's shape.
fn float_shape(value: &ort::value::DynValue) -> Option<Vec<i64>> {
    match value.dtype() {
        ValueType::Tensor { ty: TensorElementType::Float32 | TensorElementType::Float64, shape, .. } => {
            Some(shape.to_vec())
        }
        _ => None,
    }
}

fn float_tensor(value: &ort::value::DynValue) -> Option<(Vec<i64>, Vec<f32>)> {
    if let Ok((s, v)) = value.try_extract_tensor::<f32>() {
        Some((s.to_vec(), v.to_vec()))
    } else if let Ok((s, v)) = value.try_extract_tensor::<f64>() {
        Some((s.to_vec(), v.iter().map(|&x| x as f32).collect()))
    } else {
        None
    }
}
