#!/usr/bin/env python3
"""Generate a language-model-shaped synthetic teacher for benchmarks: int64 `input_ids` and
`attention_mask` [batch, positions] -> embedding 128 (times the mask) -> 256 tanh -> logits over a
vocabulary of 32,000 [batch, positions, 32000], seeded random weights. Its cost per token is an LM head's
(a 256 x 32,000 projection, 16 MFLOP), which is what precompute at a large vocabulary spends its time on;
the Brown LM of RESULTS.md (scripts/train_brown_teachers.py) has the same head shape but takes minutes to
train.

    python scripts/make_lm_teacher.py OUT.onnx [--vocab 32000] [--seed 0]
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    e = rng.normal(size=(a.vocab, 128)).astype(np.float32)
    w1 = (rng.normal(size=(128, 256)) / np.sqrt(128)).astype(np.float32)
    w2 = (rng.normal(size=(256, a.vocab)) * 4 / np.sqrt(256)).astype(np.float32)
    b2 = np.zeros(a.vocab, np.float32)
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis2"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["x"]),
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h"]),
        helper.make_node("MatMul", ["h", "W2"], ["z"]),
        helper.make_node("Add", ["z", "B2"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(e, "E"), numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(b2, "B2"), numpy_helper.from_array(np.array([2], np.int64), "axis2")]
    g = helper.make_graph(nodes, "lm_teacher",
                          [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "positions"]),
                           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "positions"])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "positions", a.vocab])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, a.out)
    print(f"{a.out}: 128 -> 256 -> {a.vocab}, {sum(int(np.prod(t.dims)) for t in inits)} parameters")


if __name__ == "__main__":
    main()
