//! Forward passes against numbers PyTorch computed for the same weights (float64), as candle checks its
//! layers. The weights are `fill(shape, salt)[i] = 0.5 * sin(0.37 * i + salt)` (row-major, PyTorch's
//! layouts), built here and in the script below; the students are built from those tensors as they are
//! loaded from `student.safetensors`.
//!
//! PyTorch 2.15.0 (CPU), the code that produced the expected values:
//!
//! ```python
//! import torch, math
//! import torch.nn.functional as F
//! def fill(shape, salt):
//!     n = math.prod(shape)
//!     return torch.tensor([math.sin(i * 0.37 + salt) * 0.5 for i in range(n)], dtype=torch.float64).reshape(shape)
//! # Embed: vocab 7, dim 3, pad 0, convs 3->4->2 (kernel 5), then 2->3.
//! E = fill((7, 3), 1.0); W0 = fill((4, 3, 5), 2.0) + 0.2; B0 = fill((4,), 3.0) + 0.3
//! W1 = fill((2, 4, 5), 4.0) + 0.2; B1 = fill((2,), 5.0) + 0.3; L0 = fill((3, 2), 6.0); C0 = fill((3,), 7.0)
//! ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [0, 0, 6, 5, 3, 5, 0, 0]])
//! valid = (ids >= 0) & (ids < 7) & (ids != 0)
//! x = (F.embedding(torch.where(valid, ids, 0), E) * valid[..., None]).transpose(1, 2)
//! for w, b in [(W0, B0), (W1, B1)]:
//!     x = F.max_pool1d(F.relu(F.conv1d(x, w, b, padding=2)), 2)
//! print("embed conv", F.linear(x.amax(2), L0, C0).flatten().tolist())
//! bag = (F.embedding(torch.where(valid, ids, 0), E) * valid[..., None]).sum(1) / valid.sum(1, keepdim=True)
//! print("embed mean bag", F.linear(bag, fill((3, 3), 6.0), C0).flatten().tolist())
//! # CNN: image 1x6x6, convs 1->2->3 (3x3, padding 1), flatten, hidden 4, classes 3.
//! S = fill((36,), 8.0); K = fill((36,), 9.0).abs() + 0.5
//! V0 = fill((2, 1, 3, 3), 10.0); D0 = fill((2,), 11.0); V1 = fill((3, 2, 3, 3), 12.0); D1 = fill((3,), 13.0)
//! H0 = fill((4, 3), 14.0); G0 = fill((4,), 15.0); H1 = fill((3, 4), 16.0); G1 = fill((3,), 17.0)
//! img = fill((2, 36), 18.0) * 4
//! h = ((img - S) * K).reshape(2, 1, 6, 6)
//! for w, b in [(V0, D0), (V1, D1)]:
//!     h = F.max_pool2d(F.relu(F.conv2d(h, w, b, padding=1)), 2)
//! print("cnn", F.linear(F.relu(F.linear(torch.flatten(h, 1), H0, G0)), H1, G1).flatten().tolist())
//! # CNN with batch normalisation: convs 1->2->3 without bias, BatchNorm2d each, on 3 images; in eval
//! # mode (running statistics) and in training mode (the batch's), then the updated running statistics.
//! N = [(fill((2,), 19.0) + 1, fill((2,), 20.0), fill((2,), 21.0), fill((2,), 22.0).abs() + 0.5),
//!      (fill((3,), 23.0) + 1, fill((3,), 24.0), fill((3,), 25.0), fill((3,), 26.0).abs() + 0.5)]
//! img = fill((3, 36), 18.0) * 4
//! for training in [False, True]:
//!     h = ((img - S) * K).reshape(3, 1, 6, 6)
//!     stats = [(m.clone(), v.clone()) for (_, _, m, v) in N]
//!     for w, (g, b, _, _), (m, v) in zip([V0, V1], N, stats):
//!         h = F.max_pool2d(F.relu(F.batch_norm(F.conv2d(h, w, padding=1), m, v, g, b, training, 0.1, 1e-5)), 2)
//!     out = F.linear(F.relu(F.linear(torch.flatten(h, 1), H0, G0)), H1, G1)
//!     print("cnn bn", "train" if training else "eval", out.flatten().tolist())
//!     if training:
//!         print("running", [t.tolist() for s in stats for t in s])
//! ```

use std::path::Path;

use ndarray::Array2;

use super::io::Tensors;
use super::{student_from_tensors, Arch, Bag, EmbedSpec, StudentKind};

/// A tensor's shape and row-major values.
type Tensor = (Vec<usize>, Vec<f32>);

fn fill(shape: &[usize], salt: f64, add: f64) -> Tensor {
    let n: usize = shape.iter().product();
    (shape.to_vec(), (0..n).map(|i| ((i as f64 * 0.37 + salt).sin() * 0.5 + add) as f32).collect())
}

fn tensors(list: &[(&str, Tensor)]) -> Tensors {
    list.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
}

/// f32 against PyTorch's float64: within 1e-5 relative.
fn close(got: &Array2<f32>, want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((f64::from(*g) - w).abs() < 1e-5 * (1.0 + w.abs()), "{got:?} vs {want:?}");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn embed_students_equal_pytorch() {
    let ids =
        Array2::from_shape_vec((2, 8), vec![3., 1., 4., 1., 5., 9., 2., 6., 0., 0., 6., 5., 3., 5., 0., 0.]).unwrap();
    let spec = EmbedSpec { vocab: 7, dim: 3, pad_id: Some(0), bag: Bag::Mean };
    let arch = |channels: Vec<usize>| Arch {
        kind: StudentKind::Embed,
        dims: vec![8, 3],
        channels,
        image: vec![],
        embed: Some(spec),
        batch_norm: false,
    };
    let mut t = tensors(&[
        ("embedding.weight", fill(&[7, 3], 1.0, 0.0)),
        ("convs.0.weight", fill(&[4, 3, 5], 2.0, 0.2)),
        ("convs.0.bias", fill(&[4], 3.0, 0.3)),
        ("convs.1.weight", fill(&[2, 4, 5], 4.0, 0.2)),
        ("convs.1.bias", fill(&[2], 5.0, 0.3)),
        ("layers.0.weight", fill(&[3, 2], 6.0, 0.0)),
        ("layers.0.bias", fill(&[3], 7.0, 0.0)),
    ]);
    let conv = student_from_tensors(&mut t, &arch(vec![4, 2]), Path::new("ref")).unwrap();
    let want = [
        0.2993081748520434,
        0.9764124106001066,
        1.3143855182619923,
        0.35164742297580626,
        0.8135673133386279,
        1.0215343015965017,
    ];
    close(&conv.forward(ids.view()), &want);
    let mut t = tensors(&[
        ("embedding.weight", fill(&[7, 3], 1.0, 0.0)),
        ("layers.0.weight", fill(&[3, 3], 6.0, 0.0)),
        ("layers.0.bias", fill(&[3], 7.0, 0.0)),
    ]);
    let bag = student_from_tensors(&mut t, &arch(vec![]), Path::new("ref")).unwrap();
    let want = [
        0.32723455395911305,
        0.5229017809128611,
        0.5694510921128065,
        0.3690454946670241,
        0.6380877305343932,
        0.630077669536984,
    ];
    close(&bag.forward(ids.view()), &want);
}

/// The reference CNN (image 1x6x6, blocks 1->2->3, flatten, hidden 4, classes 3) with the convolution
/// (and normalisation) tensors `blocks`.
fn reference_cnn(blocks: &[(&str, Tensor)], batch_norm: bool) -> Box<dyn super::Student> {
    let (_, scale) = fill(&[36], 9.0, 0.0);
    let scale: Vec<f32> = scale.iter().map(|v| v.abs() + 0.5).collect();
    let mut t = tensors(&[
        ("input.shift", fill(&[36], 8.0, 0.0)),
        ("input.scale", (vec![36], scale)),
        ("layers.0.weight", fill(&[4, 3], 14.0, 0.0)),
        ("layers.0.bias", fill(&[4], 15.0, 0.0)),
        ("layers.1.weight", fill(&[3, 4], 16.0, 0.0)),
        ("layers.1.bias", fill(&[3], 17.0, 0.0)),
    ]);
    t.extend(tensors(blocks));
    let arch = Arch {
        kind: StudentKind::Cnn,
        dims: vec![36, 4, 3],
        channels: vec![2, 3],
        image: vec![1, 6, 6],
        batch_norm,
        ..Arch::default()
    };
    student_from_tensors(&mut t, &arch, Path::new("ref")).unwrap()
}

#[test]
fn cnn_students_equal_pytorch() {
    let blocks = [
        ("convs.0.weight", fill(&[2, 1, 3, 3], 10.0, 0.0)),
        ("convs.0.bias", fill(&[2], 11.0, 0.0)),
        ("convs.1.weight", fill(&[3, 2, 3, 3], 12.0, 0.0)),
        ("convs.1.bias", fill(&[3], 13.0, 0.0)),
    ];
    let cnn = reference_cnn(&blocks, false);
    let (_, img) = fill(&[2, 36], 18.0, 0.0);
    let img = Array2::from_shape_vec((2, 36), img.iter().map(|v| v * 4.0).collect()).unwrap();
    let want = [
        -0.5993192565504378,
        -0.783789854274383,
        -0.3809705803017146,
        -0.9246084009421545,
        -1.6090956318767358,
        -0.20534506697996927,
    ];
    close(&cnn.forward(img.view()), &want);
}

#[test]
fn batch_normalised_cnn_students_equal_pytorch_in_both_modes() {
    let positive = |(shape, v): Tensor| (shape, v.iter().map(|x| x.abs() + 0.5).collect());
    let blocks = [
        ("convs.0.weight", fill(&[2, 1, 3, 3], 10.0, 0.0)),
        ("norms.0.weight", fill(&[2], 19.0, 1.0)),
        ("norms.0.bias", fill(&[2], 20.0, 0.0)),
        ("norms.0.running_mean", fill(&[2], 21.0, 0.0)),
        ("norms.0.running_var", positive(fill(&[2], 22.0, 0.0))),
        ("convs.1.weight", fill(&[3, 2, 3, 3], 12.0, 0.0)),
        ("norms.1.weight", fill(&[3], 23.0, 1.0)),
        ("norms.1.bias", fill(&[3], 24.0, 0.0)),
        ("norms.1.running_mean", fill(&[3], 25.0, 0.0)),
        ("norms.1.running_var", positive(fill(&[3], 26.0, 0.0))),
    ];
    let mut cnn = reference_cnn(&blocks, true);
    let (_, img) = fill(&[3, 36], 18.0, 0.0);
    let img = Array2::from_shape_vec((3, 36), img.iter().map(|v| v * 4.0).collect()).unwrap();
    let eval = [
        -0.5784592355309175,
        -0.726942351683552,
        -0.3915216905079355,
        -0.6642759690270865,
        -0.9232723241795515,
        -0.3413080720862576,
        -0.6391804328244374,
        -0.8658592098402784,
        -0.3559921276035127,
    ];
    close(&cnn.forward(img.view()), &eval);
    let train = [
        -0.583000978886099,
        -0.7477558111559648,
        -0.39075432751492545,
        -0.6999077698830496,
        -1.0247361111919275,
        -0.3240760440157202,
        -0.6889683172118577,
        -1.003119486823841,
        -0.3310954677931337,
    ];
    let mut ws = cnn.workspace(3);
    let sums = super::forward_whole(cnn.as_ref(), img.view(), &[0, 1, 2], &mut ws);
    close(&ws.logits, &train);
    cnn.record_batch(&sums);
    let running: Vec<f32> =
        cnn.tensors().into_iter().filter(|(name, _, _)| name.contains("running")).flat_map(|(_, _, v)| v).collect();
    let want = [
        0.3612461725805907,
        0.2826945422565226,
        0.6648689754784649,
        0.8796671524414976,
        -0.06591755093940821,
        0.09764131620738892,
        0.24802529189174796,
        0.863310777880899,
        0.9255394606583085,
        0.9636550881417358,
    ];
    close(&Array2::from_shape_vec((1, 10), running).unwrap(), &want);
}
