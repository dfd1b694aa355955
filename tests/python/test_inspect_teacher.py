"""`softlabel inspect-teacher` lists a model's inputs and every value its nodes compute with the element
type and shape ONNX Runtime infers; checked against the onnx package's own shape inference on the real
MNIST CNN and SpamAssassin text teachers (every node output listed once, in node order, and every type and
shape onnx infers equal)."""
import json
import os
import subprocess
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TYPES = {onnx.TensorProto.FLOAT: "Float32", onnx.TensorProto.INT64: "Int64", onnx.TensorProto.BOOL: "Bool",
         onnx.TensorProto.INT32: "Int32"}


@pytest.mark.parametrize("teacher", ["mnist_cnn.onnx", "spam_text.onnx"])
def test_inspect_teacher_lists_every_value_as_onnx_infers_it(teacher):
    path = ROOT / "data" / "teachers" / teacher
    got = json.loads(subprocess.run([BIN, "inspect-teacher", path, "--json"], check=True, capture_output=True,
                                    text=True).stdout)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outputs = [o for n in model.graph.node for o in n.output if o]
    assert [v["name"] for v in got] == inputs + outputs
    assert [v["op_type"] for v in got[len(inputs):]] == [n.op_type for n in model.graph.node for o in n.output if o]
    assert [v["name"] for v in got if v["is_output"]] == [o.name for o in model.graph.output]
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input)}
    compared = 0
    for v in got:
        info = infos.get(v["name"])
        if info is None or not info.type.tensor_type.elem_type:
            continue
        t = info.type.tensor_type
        assert v["element_type"] == TYPES[t.elem_type], v
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        if all(d >= 0 for d in dims[1:]):
            assert v["shape"] == dims, v
        compared += 1
    assert compared >= len(got) - 2, (compared, len(got))
