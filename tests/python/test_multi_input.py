"""Teachers of several inputs (`--input NAME=COLUMN`): each data column is converted to the element type
its model input declares and fed by name; the stored logits equal Python onnxruntime's within 1e-5.

Two teachers: the generated masked_bag fixture (ids and an attention mask, with noise behind the mask that
a correct feed ignores; its logits computed by numpy in make_models.py) and the real SpamAssassin text
classifier of scripts/train_spam_teacher.py (PyTorch 2.15, 97.95% on its 1,269 test e-mails), fed int32
ids and uint8 masks from data/spam/test.parquet as its int64 `input_ids` and `attention_mask`."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
FIXTURES = Path(os.environ.get("SOFTLABEL_FIXTURES", ROOT / "target" / "fixtures"))
SPAM_TEACHER = ROOT / "data" / "teachers" / "spam_text.onnx"
SPAM_TEST = ROOT / "data" / "spam" / "test.parquet"


def run(*args):
    subprocess.run([BIN, "--quiet", *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def stored(ds: Path):
    t = pq.read_table(sorted(ds.glob("part-*.parquet"))).sort_by("id")
    return t.column("id").to_numpy(), np.stack(t.column("logits").to_numpy(zero_copy_only=False))


def onnxruntime_logits(model: Path, data: Path):
    t = pq.read_table(data).sort_by("id")
    ids = np.stack(t.column("ids").to_numpy(zero_copy_only=False)).astype(np.int64)
    mask = np.stack(t.column("mask").to_numpy(zero_copy_only=False)).astype(np.int64)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (z,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return t, z


def test_masked_bag_fixture_equals_numpy_and_onnxruntime(tmp_path):
    out = tmp_path / "labels"
    run("precompute", "--teacher", FIXTURES / "masked_bag.onnx", "--data", FIXTURES / "masked_bag.parquet",
        "--input", "input_ids=ids", "--input", "attention_mask=mask", "-T", "2", "--batch-size", "64", "--out", out)
    ids, z = stored(out)
    t, want = onnxruntime_logits(FIXTURES / "masked_bag.onnx", FIXTURES / "masked_bag.parquet")
    assert (ids == t.column("id").to_numpy()).all()
    np.testing.assert_allclose(z, want, atol=1e-5, rtol=0)
    reference = np.array(json.loads((FIXTURES / "masked_bag.json").read_text())["logits"], np.float32)
    np.testing.assert_allclose(z, reference, atol=1e-5, rtol=0)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["schema_version"] == "2.5"
    assert m["teacher"]["input_name"] == "input_ids" and m["input"]["source_column"] == "ids"
    assert m["teacher"]["extra_inputs"] == [{"name": "attention_mask", "column": "mask", "dtype": "u8", "width": 6,
                                             "input_type": "i64", "input_shape": [-1, 6]}]
    # The stored input is the first one's; the mask is fed, recorded, and not stored.
    assert pq.read_table(sorted(out.glob("part-*.parquet"))).column_names == ["id", "label", "input", "logits", "soft"]


def test_real_spam_teacher_equals_onnxruntime(tmp_path):
    out = tmp_path / "spam"
    run("precompute", "--teacher", SPAM_TEACHER, "--data", SPAM_TEST, "--input", "input_ids=ids",
        "--input", "attention_mask=mask", "-T", "2", "--batch-size", "100", "--out", out)
    ids, z = stored(out)
    t, want = onnxruntime_logits(SPAM_TEACHER, SPAM_TEST)
    assert len(ids) == 1269 and (ids == t.column("id").to_numpy()).all()
    np.testing.assert_allclose(z, want, atol=1e-5, rtol=0)
    # The teacher's test errors as its training log recorded them (26 of 1,269).
    errors = int((z.argmax(1) != t.column("label").to_numpy()).sum())
    log = [json.loads(l) for l in SPAM_TEACHER.with_suffix(".train.log").read_text().splitlines()]
    assert errors == log[-1]["test_errors"] == 26
    subprocess.run([BIN, "--quiet", "verify", str(out)], check=True, stdout=subprocess.DEVNULL)
