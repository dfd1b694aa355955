"""The exported student as a deployment team sees it: a valid ONNX model (onnx.checker, full check) that
ONNX Runtime runs on the teacher's raw input, equal to a numpy forward pass over the exported
safetensors weights (an independent reference implementation of the MLP)."""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
FX = Path(os.environ.get("SOFTLABEL_FIXTURES", str(ROOT / "target" / "fixtures")))


def run(*args):
    subprocess.run([BIN, "--quiet", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def read_safetensors(path: Path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        assert t["dtype"] == "F32"
        tensors[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return tensors, meta


def numpy_forward(t, x):
    h = (x.astype(np.float64) - t["input.shift"]) * t["input.scale"]
    i = 0
    while f"layers.{i}.weight" in t:
        h = h @ t[f"layers.{i}.weight"].T.astype(np.float64) + t[f"layers.{i}.bias"]
        i += 1
        if f"layers.{i}.weight" in t:
            h = np.maximum(h, 0)
    return h


def test_export_is_valid_onnx_and_matches_numpy(tmp_path):
    labels, student, out = tmp_path / "labels", tmp_path / "student", tmp_path / "student.onnx"
    test = ROOT / "data" / "mnist" / "test.parquet"
    run("precompute", "--teacher", ROOT / "data/teachers/mnist_cnn.onnx", "--data", test, "--input-column", "image",
        "--temperature", "4", "--out", labels)
    run("train", "--labels", labels, "--out", student, "--hidden", "64,32", "--epochs", "1")
    run("export", "--student", student, "--out", out)

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    # The student takes the teacher's input exactly (name, element type, shape), not the dataset's uint8.
    (inp,) = model.graph.input
    (teacher_inp,) = onnx.load(str(ROOT / "data/teachers/mnist_cnn.onnx")).graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 28, 28] and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert (inp.name, inp.type.tensor_type.elem_type) == (teacher_inp.name, teacher_inp.type.tensor_type.elem_type)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["softlabel.student"])["dims"] == [784, 64, 32, 10]

    tensors, st_meta = read_safetensors(out.with_suffix(".safetensors"))
    assert json.loads(st_meta["config"])["dims"] == [784, 64, 32, 10]
    images = np.stack(pq.read_table(test).column("image").to_numpy(zero_copy_only=False))[:2000]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, probs = sess.run(None, {teacher_inp.name: images.reshape(-1, 1, 28, 28).astype(np.float32)})
    ref = numpy_forward(tensors, images.astype(np.float32))
    assert np.abs(logits - ref).max() / max(1.0, np.abs(ref).max()) < 1e-5
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == ref.argmax(1)).mean() > 0.999


def numpy_embed_forward(t, ids, vocab, pad, bag="mean"):
    """The embed student in numpy (float64): masked ids, a mean/max bag or Conv1d(k5, padding 2) + ReLU +
    MaxPool1d(2) blocks and a global max, then the fully connected layers."""
    ids = ids.astype(np.int64)
    valid = (ids >= 0) & (ids < vocab) & (ids != pad)
    emb = t["embedding.weight"].astype(np.float64)[np.where(valid, ids, 0)] * valid[..., None]  # [N, L, D]
    if "convs.0.weight" not in t:
        count = valid.sum(1, keepdims=True)
        if bag == "mean":
            h = emb.sum(1) / np.maximum(count, 1)
        else:
            h = np.where(count > 0, np.where(valid[..., None], emb, -np.inf).max(1), 0.0)
    else:
        a = emb.transpose(0, 2, 1)  # [N, C, L]
        i = 0
        while f"convs.{i}.weight" in t:
            w, b = t[f"convs.{i}.weight"].astype(np.float64), t[f"convs.{i}.bias"]
            n, c, length = a.shape
            padded = np.concatenate([np.zeros((n, c, 2)), a, np.zeros((n, c, 2))], axis=2)
            z = np.stack([np.einsum("ock,nck->no", w, padded[:, :, p : p + 5]) for p in range(length)], axis=2)
            z = np.maximum(z + b[None, :, None], 0)
            a = z[:, :, : length // 2 * 2].reshape(n, z.shape[1], length // 2, 2).max(3)
            i += 1
        h = a.max(2)
    i = 0
    while f"layers.{i}.weight" in t:
        h = h @ t[f"layers.{i}.weight"].T.astype(np.float64) + t[f"layers.{i}.bias"]
        i += 1
        if f"layers.{i}.weight" in t:
            h = np.maximum(h, 0)
    return h


def test_embed_export_is_valid_onnx_and_matches_numpy(tmp_path):
    """The embed student exports with the teacher's int64 `tokens` input; ids 15..19 (outside --vocab 15)
    and the pad id 0 are masked in ONNX Runtime exactly as in the numpy reference."""
    labels = tmp_path / "labels"
    run("precompute", "--teacher", FX / "bag_teacher.onnx", "--data", FX / "tokens.parquet", "--input-column", "tokens",
        "--temperature", "2", "--out", labels)
    ids = np.stack(pq.read_table(FX / "tokens.parquet").column("tokens").to_numpy(zero_copy_only=False))
    cases = [(["--vocab", "15", "--hidden", "8"], "mean"), (["--bag", "max", "--hidden", "8"], "max"),
             (["--channels", "6,4", "--hidden", "5"], "mean")]
    for i, (flags, bag) in enumerate(cases):
        student, out = tmp_path / f"student{i}", tmp_path / f"student{i}.onnx"
        run("train", "--labels", labels, "--out", student, "--student", "embed", "--embed-dim", "4", "--pad-id", "0",
            "--alpha", "1", "--epochs", "2", *flags)
        run("export", "--student", student, "--out", out)
        model = onnx.load(str(out))
        onnx.checker.check_model(model, full_check=True)
        (inp,) = model.graph.input
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert (inp.name, inp.type.tensor_type.elem_type, dims) == ("tokens", onnx.TensorProto.INT64, ["batch", 16])
        tensors, meta = read_safetensors(out.with_suffix(".safetensors"))
        vocab = json.loads(meta["config"])["embed"]["vocab"]
        assert vocab == (15 if i == 0 else 20)
        sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits, _ = sess.run(None, {"tokens": ids})
        ref = numpy_embed_forward(tensors, ids, vocab, 0, bag)
        assert np.abs(logits - ref).max() / max(1.0, np.abs(ref).max()) < 1e-5, flags


def test_report_numbers_and_plots(tmp_path):
    """`softlabel report`: parameter counts equal the onnx package's count of initializer elements (int64
    and bool constants, such as a Reshape's shape, left out), the
    ratios follow from the numbers, and the three plots are well-formed, non-empty SVG."""
    labels, student, out = tmp_path / "labels", tmp_path / "student", tmp_path / "report"
    test = ROOT / "data" / "mnist" / "test.parquet"
    teacher = ROOT / "data/teachers/mnist_cnn.onnx"
    run("precompute", "--teacher", teacher, "--data", test, "--input-column", "image", "--temperature", "4", "--out", labels)
    run("train", "--labels", labels, "--out", student, "--hidden", "32", "--epochs", "2", "--val-fraction", "0.1")
    run("report", "--teacher", teacher, "--student", student, "--data", test, "--labels", labels, "--out", out,
        "--latency-runs", "50")
    r = json.loads((out / "report.json").read_text())

    def count(path):
        m = onnx.load(str(path))
        weights = [t for t in m.graph.initializer if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.BOOL)]
        return int(sum(np.prod(t.dims) for t in weights))

    assert r["teacher"]["parameters"] == count(teacher)
    assert r["student"]["parameters"] == count(out / "student.onnx")
    assert r["teacher"]["bytes"] == teacher.stat().st_size
    q = r["ratios"]
    assert abs(q["smaller_x"] - r["teacher"]["bytes"] / r["student"]["bytes"]) < 1e-9
    assert abs(q["accuracy_kept_pct"] - 100 * r["student"]["accuracy"] / r["teacher"]["accuracy"]) < 1e-9
    assert r["teacher"]["accuracy"] == 1 - 37 / 10_000  # the shipped teacher's 37 test errors
    for key in ("latency_p50_ms", "latency_p99_ms", "throughput_rows_per_s"):
        assert r["student"][key] > 0 and r["teacher"][key] > 0
    assert r["teacher"]["latency_p99_ms"] >= r["teacher"]["latency_p50_ms"]
    assert sorted(r["plots"]) == ["reliability.svg", "temperatures.svg", "training_curves.svg"]
    import xml.etree.ElementTree as ET
    for p in r["plots"]:
        root = ET.parse(out / p).getroot()
        assert root.tag.endswith("svg") and len(list(root.iter())) > 20
    assert "| top-1 accuracy |" in (out / "report.md").read_text()


def test_int8_export_is_valid_onnx_that_onnxruntime_runs_as_integer_kernels(tmp_path):
    """`export --int8` of a CNN student: onnx.checker's full check passes, every weight is int8 with one
    scale per output channel (biases int32), ONNX Runtime fuses the QDQ pairs into QLinearConv and QGemm
    (so it really computes in integers), and it agrees with the float export on almost every image."""
    labels, student = tmp_path / "labels", tmp_path / "student"
    test = ROOT / "data" / "mnist" / "test.parquet"
    run("precompute", "--teacher", ROOT / "data/teachers/mnist_cnn.onnx", "--data", test, "--input-column", "image",
        "--temperature", "4", "--out", labels)
    run("train", "--labels", labels, "--out", student, "--student", "cnn", "--channels", "4,8", "--hidden", "16",
        "--epochs", "2")
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    run("export", "--student", student, "--out", fp32)
    run("export", "--student", student, "--out", int8, "--int8")

    model = onnx.load(str(int8))
    onnx.checker.check_model(model, full_check=True)
    inits = {t.name: t for t in model.graph.initializer}
    for name, t in inits.items():
        if name.endswith(".weight_quantized"):
            assert t.data_type == onnx.TensorProto.INT8, name
            scale = inits[name.replace("_quantized", "_scale")]
            assert list(scale.dims) == [t.dims[0]], f"{name}: one scale per output channel"
        if name.endswith(".bias_quantized"):
            assert t.data_type == onnx.TensorProto.INT32, name
    assert not [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2
                and not t.name.startswith("input.")], "no float weight matrix is left"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["softlabel.quantization"].startswith("int8 QDQ") and "1024 rows" in meta["softlabel.quantization"]

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert {"QLinearConv", "QGemm"} <= ops, ops
    assert not {"Conv", "Gemm", "DequantizeLinear"} & ops, ops

    x = np.stack(pq.read_table(test, columns=["image"]).column("image").to_numpy(zero_copy_only=False))
    x = x.reshape(-1, 1, 28, 28).astype(np.float32)
    name = model.graph.input[0].name
    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(["logits"], {name: x})[0]
    b = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(["logits"], {name: x})[0]
    agree = (a.argmax(1) == b.argmax(1)).mean()
    assert agree >= 0.98, agree
