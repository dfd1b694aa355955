"""Teachers as they come, checked against numpy: an ensemble's averaged logits, and a probability
teacher's log p (with -inf where p underflows to 0) read back by pyarrow without NaN."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
FX = Path(os.environ.get("SOFTLABEL_FIXTURES", str(ROOT / "target" / "fixtures")))


def precompute(out, *teachers, extra=()):
    args = [BIN, "--quiet", "precompute", "--data", str(FX / "small.parquet"), "--temperature", "2", "--out", str(out)]
    for t in teachers:
        args += ["--teacher", str(FX / t)]
    subprocess.run(args + list(extra), check=True, stdout=subprocess.DEVNULL)
    t = pads.dataset(str(out), format="parquet").to_table().sort_by("id")
    x = np.stack(t["input"].to_numpy(zero_copy_only=False)).astype(np.float64)
    return x, np.stack(t["logits"].to_numpy(zero_copy_only=False)), np.stack(t["soft"].to_numpy(zero_copy_only=False))


def test_ensemble_mean_of_logits_matches_numpy(tmp_path):
    p = json.loads((FX / "linear.json").read_text())
    x, logits, _ = precompute(tmp_path / "ens", "linear.onnx", "linear_b.onnx")
    ref = ((x @ np.array(p["W"]) + p["B"]) + (x @ np.array(p["W2"]) + p["B2"])) / 2  # numpy float64 reference
    assert np.abs(logits - ref).max() < 1e-5
    manifest = json.loads((tmp_path / "ens" / "_manifest.json").read_text())
    assert [m["file"] for m in manifest["ensemble"]["members"]] == ["linear.onnx", "linear_b.onnx"]


def test_saturated_probabilities_read_back_without_nan(tmp_path):
    _, logits, soft = precompute(tmp_path / "sat", "saturated_softmax_teacher.onnx")
    assert np.isneginf(logits).any() and not np.isnan(logits).any()
    z = logits.astype(np.float64) / 2
    z = z - z.max(axis=1, keepdims=True)
    ref = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # exp(-inf) = 0 in numpy too
    assert not np.isnan(soft).any() and np.abs(soft - ref).max() < 1e-6
