#!/usr/bin/env python3
"""Generate a wide synthetic teacher: uint8 image [batch, 784] -> 2048 -> 2048 -> 1000 classes (ReLU MLP,
seeded random weights, /255 input scaling inside), for benchmarks and the sparse-label table where
many classes matter. Its logits have a standard deviation of about 8 per row (measured on MNIST), so
softened at T = 4 the distribution is neither one-hot nor flat.

    python scripts/make_wide_teacher.py OUT.onnx [--classes 1000] [--hidden 2048] [--depth 2] [--seed 0]
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=2, help="hidden layers (1 gives the light 784-256-10 teacher)")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    dims = [784] + [a.hidden] * a.depth + [a.classes]
    inits, nodes = [numpy_helper.from_array(np.array([1 / 255], np.float32), "scale")], []
    nodes += [helper.make_node("Cast", ["image"], ["xf"], to=TensorProto.FLOAT), helper.make_node("Mul", ["xf", "scale"], ["h0"])]
    for i, (n_in, n_out) in enumerate(zip(dims, dims[1:])):
        gain = 24.0 if i == len(dims) - 2 else np.sqrt(2.0)   # He init; the last layer scaled for logit spread
        w = (rng.normal(size=(n_in, n_out)) * gain / np.sqrt(n_in)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(n_out, np.float32), f"b{i}")]
        out = "logits" if i == len(dims) - 2 else f"z{i}"
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [out]))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"]))
    g = helper.make_graph(nodes, "wide_teacher",
                          [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 784])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", a.classes])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, a.out)
    print(f"{a.out}: {dims}, {sum(int(np.prod(t.dims)) for t in inits)} parameters")


if __name__ == "__main__":
    main()
