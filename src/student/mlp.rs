//! A multi-layer perceptron: `x -> (x - shift) * scale -> [Linear -> ReLU]* -> Linear -> logits`.

use ndarray::{s, Array2, ArrayView2, ArrayViewMut1, ArrayViewMut2, ArrayViewMutD, Axis};
use rand::Rng;

use super::layers::{
    head_backward, head_extras, head_forward, head_position, head_width, HeadBuffers, InputScaling, Linear, Relu,
};
use super::{Op, Student, Tap, Tensor, Workspace};

/// The MLP student.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// Layers, the last one producing logits.
    pub layers: Vec<Linear>,
    /// The input scaling.
    pub scaling: InputScaling,
}

/// The MLP's activations, per worker.
struct Buffers {
    /// The scaled input rows.
    x: Array2<f32>,
    /// Between the layers.
    head: HeadBuffers,
}

impl Mlp {
    /// A freshly initialised network for `dims = [input, hidden..., classes]` (PyTorch's default
    /// `nn.Linear` init, layer by layer) with identity input scaling.
    pub fn init(dims: &[usize], rng: &mut impl Rng) -> Self {
        let layers = dims.windows(2).map(|io| Linear::init(io[0], io[1], rng)).collect();
        Mlp { layers, scaling: InputScaling::identity(dims[0]) }
    }

    /// Hidden layer sizes.
    pub fn hidden(&self) -> Vec<usize> {
        self.layers[..self.layers.len().saturating_sub(1)].iter().map(Linear::outputs).collect()
    }

    fn forward_block(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let (shift, scale) = (&self.scaling.shift, &self.scaling.scale);
        let mut a = (&x - &shift.view().insert_axis(Axis(0))) * scale.view().insert_axis(Axis(0));
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = Array2::zeros((a.nrows(), layer.outputs()));
            layer.forward(a.view(), z.view_mut());
            if i < last {
                Relu::forward(z.view_mut());
            }
            a = z;
        }
        a
    }

    fn param_shapes(&self) -> Vec<Vec<usize>> {
        self.layers.iter().flat_map(|l| [l.w.shape().to_vec(), l.b.shape().to_vec()]).collect()
    }
}

impl Student for Mlp {
    fn arch(&self) -> super::Arch {
        super::Arch { kind: super::StudentKind::Mlp, dims: self.dims(), ..Default::default() }
    }

    fn input_width(&self) -> usize {
        self.scaling.width()
    }

    fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, Linear::outputs)
    }

    fn dims(&self) -> Vec<usize> {
        let mut d = vec![self.input_width()];
        d.extend(self.layers.iter().map(Linear::outputs));
        d
    }

    fn scaling(&self) -> &InputScaling {
        &self.scaling
    }

    fn scaling_mut(&mut self) -> &mut InputScaling {
        &mut self.scaling
    }

    fn forward(&self, x: ArrayView2<f32>) -> Array2<f32> {
        super::forward_in_blocks(x, self.num_classes(), 256, |xb| self.forward_block(xb))
    }

    fn workspace(&self, rows: usize) -> Workspace {
        let buffers =
            Buffers { x: Array2::zeros((rows, self.input_width())), head: HeadBuffers::new(&self.layers, rows) };
        Workspace::new(rows, self.num_classes(), &self.param_shapes(), Box::new(buffers))
    }

    fn forward_train(&self, inputs: ArrayView2<f32>, rows: &[usize], ws: &mut Workspace) {
        let m = rows.len();
        ws.rows = m;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        self.scaling.gather(inputs, rows, &mut b.x);
        head_forward(&self.layers, b.x.slice(s![..m, ..]), &mut b.head, ws.logits.slice_mut(s![..m, ..]));
    }

    fn backward(&self, ws: &mut Workspace) {
        let m = ws.rows;
        let Some(b) = ws.state.downcast_mut::<Buffers>() else { return };
        let d = ws.grad_logits.slice(s![..m, ..]);
        let extras = head_extras(&self.layers, &ws.grad_taps, m);
        head_backward(&self.layers, b.x.slice(s![..m, ..]), &mut b.head, d, &mut ws.grads, None, &extras);
    }

    /// Hidden layers only: the input is not trained.
    fn tap_shape(&self, tap: Tap) -> Option<Vec<usize>> {
        let j = head_position(&self.layers, tap).filter(|&j| j > 0)?;
        Some(vec![head_width(&self.layers, j)])
    }

    fn read_tap(&self, ws: &Workspace, tap: Tap, mut out: ArrayViewMut2<f32>) -> bool {
        let (Some(b), Some(j)) =
            (ws.state.downcast_ref::<Buffers>(), head_position(&self.layers, tap).filter(|&j| j > 0))
        else {
            return false;
        };
        out.assign(&b.head.at(b.x.view(), j, ws.rows));
        true
    }

    fn params_mut(&mut self) -> Vec<ArrayViewMutD<'_, f32>> {
        self.layers.iter_mut().flat_map(|l| [l.w.view_mut().into_dyn(), l.b.view_mut().into_dyn()]).collect()
    }

    fn num_parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    /// `input.shift`, `input.scale`, then `layers.{i}.weight` (`[out, in]`, as `torch.nn.Linear`) and
    /// `layers.{i}.bias`.
    fn tensors(&self) -> Vec<Tensor> {
        let mut out = super::io::scaling_tensors(&self.scaling);
        out.extend(super::io::linear_tensors(&self.layers));
        out
    }

    fn graph(&self) -> Vec<Op> {
        let mut ops = vec![Op::Scale { shift: self.scaling.shift.clone(), scale: self.scaling.scale.clone() }];
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                ops.push(Op::Relu);
            }
            ops.push(Op::Linear { w: l.w.clone(), b: l.b.clone() });
        }
        ops
    }

    fn output_bias_mut(&mut self) -> ArrayViewMut1<'_, f32> {
        match self.layers.last_mut() {
            Some(l) => l.b.view_mut(),
            None => ArrayViewMut1::from(&mut [][..]),
        }
    }

    fn boxed(&self) -> Box<dyn Student> {
        Box::new(self.clone())
    }
}
