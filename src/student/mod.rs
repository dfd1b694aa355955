//! Students: the [`Student`] trait every student implements, the layers they are built from
//! ([`layers`]), the MLP ([`mlp`]), and the student folder on disk ([`io`]).
//!
//! A student takes the teacher's raw input, scales it ([`layers::InputScaling`]), and produces logits.
//! Training ([`crate::train`]) drives it through [`Student::forward_train`] and [`Student::backward`] on
//! each worker's rows, into that worker's [`Workspace`]; the parameters and their gradients are listed
//! in the same fixed order by [`Student::params_mut`] and [`Workspace::grads`].

pub mod cnn;
pub mod embed;
pub mod graph;
pub mod io;
pub mod layers;
pub mod mlp;
#[cfg(test)]
mod torch_reference;

use std::any::Any;

use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD};

pub use cnn::Cnn;
pub use embed::{Bag, Embed, EmbedSpec};
pub use graph::Op;
pub use io::student_from_tensors;
pub use io::{EpochLog, StudentFile, StudentInfo, Tensor};
pub use layers::{InputScaling, InputStats};
pub use mlp::Mlp;

/// Which network a student is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StudentKind {
    /// A multi-layer perceptron on the flat input.
    #[default]
    Mlp,
    /// Convolution blocks on the image-shaped input, then fully connected layers.
    Cnn,
    /// An embedding table for integer inputs (token ids, bytes), a bag or 1-D convolutions, then fully
    /// connected layers.
    Embed,
}

/// A layer of a student whose output a feature or relation term reads (`--hint FEATURE@LAYER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tap {
    /// The input of the final linear layer: the last hidden layer's output, or the features below the
    /// fully connected layers (the pooled bag or map) when there are none.
    #[default]
    Embedding,
    /// Fully connected hidden layer `i` (0-based; `@{i + 1}` on the command line), after its ReLU.
    Hidden(usize),
    /// The output of convolution block `i` (0-based; `@block{i + 1}`), after its pooling: `[C, H, W]`.
    Block(usize),
}

impl Tap {
    /// Parses a layer as the command line writes it: `embedding`, `N` (hidden layer N, from 1) or
    /// `blockN` (convolution block N, from 1).
    pub fn parse(text: &str) -> Option<Tap> {
        let number = |t: &str| t.parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1);
        match text.trim() {
            "embedding" => Some(Tap::Embedding),
            t => match t.strip_prefix("block") {
                Some(n) => number(n).map(Tap::Block),
                None => number(t).map(Tap::Hidden),
            },
        }
    }
}

impl std::fmt::Display for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tap::Embedding => write!(f, "embedding"),
            Tap::Hidden(i) => write!(f, "{}", i + 1),
            Tap::Block(i) => write!(f, "block{}", i + 1),
        }
    }
}

impl serde::Serialize for Tap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Tap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Tap::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("layer '{text}': expected embedding, N or blockN (from 1)"))
        })
    }
}

/// What it takes to rebuild a student from its tensors: its kind and shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Arch {
    /// The kind.
    pub kind: StudentKind,
    /// `[input, hidden..., classes]`.
    pub dims: Vec<usize>,
    /// Output channels of each convolution block (CNN).
    pub channels: Vec<usize>,
    /// The input image `[C, H, W]` (CNN).
    pub image: Vec<usize>,
    /// The embedding table (embed).
    pub embed: Option<EmbedSpec>,
    /// Whether each convolution block is batch-normalised (CNN).
    pub batch_norm: bool,
}

impl Arch {
    /// A fresh network of this shape.
    pub fn init(&self, rng: &mut impl rand::Rng) -> crate::error::Result<Box<dyn Student>> {
        match self.kind {
            StudentKind::Mlp => Ok(Box::new(Mlp::init(&self.dims, rng))),
            StudentKind::Cnn => {
                let hidden = &self.dims[1..self.dims.len() - 1];
                let classes = self.dims[self.dims.len() - 1];
                Ok(Box::new(Cnn::init(self.image3()?, &self.channels, self.batch_norm, hidden, classes, rng)?))
            }
            StudentKind::Embed => {
                let hidden = &self.dims[1..self.dims.len() - 1];
                let classes = self.dims[self.dims.len() - 1];
                Ok(Box::new(Embed::init(self.dims[0], &self.embed_spec()?, &self.channels, hidden, classes, rng)?))
            }
        }
    }

    /// The embedding table's shape (embed).
    pub fn embed_spec(&self) -> crate::error::Result<EmbedSpec> {
        self.embed.ok_or_else(|| crate::error::Error::Config("an embed student needs its table's shape".into()))
    }

    /// The image as `[C, H, W]`.
    pub fn image3(&self) -> crate::error::Result<[usize; 3]> {
        match self.image.as_slice() {
            &[c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
            &[h, w] if h > 0 && w > 0 => Ok([1, h, w]),
            other => Err(crate::error::Error::Config(format!(
                "a cnn student needs image-shaped inputs ([C, H, W] or [H, W]); the labels' input shape is {other:?}"
            ))),
        }
    }

    /// In words: "MLP 784-800-10 (ReLU)", "CNN 1x28x28, 3x3 conv 16-32 with 2x2 max-pool, then 64-10 (ReLU)".
    pub fn describe(&self) -> String {
        let join = |v: &[usize], sep: &str| v.iter().map(usize::to_string).collect::<Vec<_>>().join(sep);
        match self.kind {
            StudentKind::Mlp => format!("MLP {} (ReLU)", join(&self.dims, "-")),
            StudentKind::Cnn => format!(
                "CNN {}, 3x3 conv {}{} with 2x2 max-pool, then {} {} (ReLU)",
                join(&self.image, "x"),
                join(&self.channels, "-"),
                if self.batch_norm { " + batch norm" } else { "" },
                if self.dims.len() == 2 { "global average pool to" } else { "fully connected" },
                join(&self.dims[1..], "-")
            ),
            StudentKind::Embed => {
                let (vocab, dim) = self.embed.map_or((0, 0), |e| (e.vocab, e.dim));
                let body = if self.channels.is_empty() {
                    let bag = match self.embed.map(|e| e.bag).unwrap_or_default() {
                        Bag::Mean => "mean",
                        Bag::Max => "max",
                        Bag::Concat => "concat",
                    };
                    format!("{bag} bag")
                } else {
                    format!("conv k5 {} with max-pool 2, global max-pool", join(&self.channels, "-"))
                };
                format!(
                    "Embed {} ids, table {vocab}x{dim}, {body}, then {} (ReLU)",
                    self.dims[0],
                    join(&self.dims[1..], "-")
                )
            }
        }
    }
}

/// Inference over `x` in parallel blocks of `block` rows: `forward_block` maps each block of raw rows to
/// its `[rows, classes]` logits.
pub(crate) fn forward_in_blocks(
    x: ArrayView2<f32>,
    classes: usize,
    block: usize,
    forward_block: impl Fn(ArrayView2<f32>) -> Array2<f32> + Sync,
) -> Array2<f32> {
    use ndarray::Axis;
    use rayon::prelude::*;
    let mut out = Array2::<f32>::zeros((x.nrows(), classes));
    out.axis_chunks_iter_mut(Axis(0), block)
        .into_par_iter()
        .zip(x.axis_chunks_iter(Axis(0), block).into_par_iter())
        .for_each(|(mut o, xb)| o.assign(&forward_block(xb)));
    out
}

/// The whole training forward pass of `student` on `rows`, all in one workspace (so the batch is
/// `rows`); returns the sums at each sync point.
pub fn forward_whole(
    student: &dyn Student,
    inputs: ArrayView2<f32>,
    rows: &[usize],
    ws: &mut Workspace,
) -> Vec<Vec<f64>> {
    student.forward_train(inputs, rows, ws);
    let mut sums = Vec::new();
    for point in 0..student.sync_points() {
        let batch = ws.partial.clone();
        student.forward_resume(point, &batch, ws);
        sums.push(batch);
    }
    sums
}

/// The workers' partial sums at a sync point, added in worker order (so the same for the same thread
/// count, run after run); workers without rows have none.
pub(crate) fn sum_partials(spaces: &[Workspace]) -> Vec<f64> {
    let mut total: Vec<f64> = Vec::new();
    for ws in spaces.iter().filter(|ws| ws.rows > 0) {
        total.resize(total.len().max(ws.partial.len()), 0.0);
        total.iter_mut().zip(&ws.partial).for_each(|(t, p)| *t += p);
    }
    total
}

/// The whole backward pass of `student` in one workspace, after [`forward_whole`].
pub fn backward_whole(student: &dyn Student, ws: &mut Workspace) {
    student.backward(ws);
    for point in (0..student.sync_points()).rev() {
        let batch = ws.partial.clone();
        student.backward_resume(point, &batch, ws);
    }
}

/// A trainable student network.
pub trait Student: Send + Sync + std::fmt::Debug {
    /// Its kind and shape (to rebuild it from its tensors).
    fn arch(&self) -> Arch;
    /// Values per input row.
    fn input_width(&self) -> usize;
    /// Classes (logits per row).
    fn num_classes(&self) -> usize;
    /// The layer sizes recorded in `student.json` (`dims`): `[input, hidden..., classes]` for an MLP.
    fn dims(&self) -> Vec<usize>;
    /// The input scaling applied before the first layer.
    fn scaling(&self) -> &InputScaling;
    /// The input scaling, to set it from the training data's statistics.
    fn scaling_mut(&mut self) -> &mut InputScaling;
    /// Whether the input is scaled by the training data's statistics (not for token ids).
    fn scales_input(&self) -> bool {
        true
    }
    /// The parameter (an index into [`Student::params_mut`]) whose gradient is sparse: after
    /// [`Student::backward`] only its rows in [`Workspace::touched`] may be non-zero, and it expects the
    /// others to be zero when backward is called (the trainer zeroes the rows it used).
    fn sparse_param(&self) -> Option<usize> {
        None
    }
    /// Logits for raw inputs `[rows, input_width]` (inference, in parallel blocks of rows).
    fn forward(&self, x: ArrayView2<f32>) -> Array2<f32>;
    /// Buffers for training on up to `rows` rows at a time.
    fn workspace(&self, rows: usize) -> Workspace;
    /// Forward pass over rows `rows` of raw `inputs` into `ws` (its first `rows.len()` logits).
    fn forward_train(&self, inputs: ArrayView2<f32>, rows: &[usize], ws: &mut Workspace);
    /// Backward pass from `ws.grad_logits` (for the rows of the last forward) into `ws.grads`.
    fn backward(&self, ws: &mut Workspace);
    /// Points in the passes where the whole batch's statistics are needed (a batch-normalised layer
    /// each): 0 for a student whose rows are independent. With `n > 0`, [`Student::forward_train`] stops
    /// at the first point, leaving its rows' partial sums in [`Workspace::partial`]; the trainer adds the
    /// workers' sums in a fixed order and hands the total to [`Student::forward_resume`] at that point,
    /// which goes on to the next. [`Student::backward`] and [`Student::backward_resume`] do the same from
    /// the last point down. So the statistics are the batch's, whatever the number of workers.
    fn sync_points(&self) -> usize {
        0
    }
    /// Continues the forward pass at sync point `point` with the batch's sums there.
    fn forward_resume(&self, _point: usize, _batch: &[f64], _ws: &mut Workspace) {}
    /// Continues the backward pass at sync point `point` with the batch's sums there (`ws.partial` still
    /// holds this worker's own).
    fn backward_resume(&self, _point: usize, _batch: &[f64], _ws: &mut Workspace) {}
    /// After a training step's forward pass: the batch's sums at each sync point (running statistics
    /// for inference are updated from them).
    fn record_batch(&mut self, _sums: &[Vec<f64>]) {}
    /// The shape of a row of `tap` (`[width]` for a fully connected layer, `[C, H, W]` for a
    /// convolution block), or `None` when the student has no such layer (or nothing trainable below it:
    /// the embedding of an MLP without hidden layers is its input).
    fn tap_shape(&self, tap: Tap) -> Option<Vec<usize>>;
    /// Copies `tap`'s values for the rows of the last [`Student::forward_train`] on `ws` into `out`
    /// (`[rows, product of tap_shape]`, CHW order for a map); false when the student has no such tap.
    /// Terms on it send their gradient back through [`Workspace::grad_taps`].
    fn read_tap(&self, ws: &Workspace, tap: Tap, out: ArrayViewMut2<f32>) -> bool;
    /// The trainable tensors, in the order of [`Workspace::grads`].
    fn params_mut(&mut self) -> Vec<ArrayViewMutD<'_, f32>>;
    /// Trainable parameters.
    fn num_parameters(&self) -> usize;
    /// The tensors saved in `student.safetensors` (PyTorch layout), the scaling included.
    fn tensors(&self) -> Vec<Tensor>;
    /// The network as a sequence of operations, for export.
    fn graph(&self) -> Vec<Op>;
    /// The bias of the output layer, one per class (`softlabel adjust-bias`).
    fn output_bias_mut(&mut self) -> ArrayViewMut1<'_, f32>;
    /// A copy, for checkpoints and for changing a saved student.
    fn boxed(&self) -> Box<dyn Student>;
}

/// One worker's training buffers: the logits of its rows, their loss gradient (written by the
/// loss), the parameter gradients (written by [`Student::backward`]), and the student's own activations.
pub struct Workspace {
    /// Rows of the last forward pass.
    pub rows: usize,
    /// Logits, `[capacity, classes]`; the first `rows` are valid.
    pub logits: Array2<f32>,
    /// d loss / d logits, same shape.
    pub grad_logits: Array2<f32>,
    /// d loss / d parameter, in the order of [`Student::params_mut`].
    pub grads: Vec<ArrayD<f32>>,
    /// The loss summed over the rows of the last step.
    pub loss: f64,
    /// The rows of the [`Student::sparse_param`] gradient the last backward wrote, ascending.
    pub touched: Vec<u32>,
    /// d loss / d each tap's values ([`Student::read_tap`]), `[capacity, width]`, added where the
    /// backward pass reaches that layer; set by the trainer when the loss has terms on taps.
    pub grad_taps: Vec<(Tap, Array2<f32>)>,
    /// This worker's partial sums at the sync point the last pass stopped at ([`Student::sync_points`]).
    pub partial: Vec<f64>,
    /// The student's activations.
    pub(crate) state: Box<dyn Any + Send>,
}

impl Workspace {
    /// A workspace for `rows` rows of `classes` logits, gradients shaped like `params`.
    pub fn new(rows: usize, classes: usize, params: &[Vec<usize>], state: Box<dyn Any + Send>) -> Self {
        Workspace {
            rows: 0,
            logits: Array2::zeros((rows, classes)),
            grad_logits: Array2::zeros((rows, classes)),
            grads: params.iter().map(|s| ArrayD::zeros(s.as_slice())).collect(),
            loss: 0.0,
            touched: Vec::new(),
            grad_taps: Vec::new(),
            partial: Vec::new(),
            state,
        }
    }
}
