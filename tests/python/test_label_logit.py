"""Top-k labels made from labelled data store each row's teacher logit of its label (`label_logit`, schema
2.11): equal to Python onnxruntime's logit at the label on the real MNIST CNN teacher, read by pyarrow,
pandas and DuckDB, checked by every reader (a changed value is refused naming file, column and row), and
used by `train --loss dkd`, which on top-k labels that hold every class trains as on dense labels."""
import json
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from softlabel_testing import reseal

import softlabel

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
TEACHER = ROOT / "data" / "teachers" / "mnist_cnn.onnx"


def run(*args):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=True, capture_output=True, text=True)


def test_label_logit_is_stored_checked_and_used_by_dkd(tmp_path):
    src = tmp_path / "x.parquet"
    t = pq.read_table(ROOT / "data" / "mnist" / "test.parquet").slice(0, 1000)
    pq.write_table(t, src)
    common = ["--teacher", TEACHER, "--data", src, "--input-column", "image", "-T", "4"]
    top3, top10, dense = tmp_path / "top3", tmp_path / "top10", tmp_path / "dense"
    run("precompute", *common, "--top-k", "3", "--rows-per-part", "400", "--out", top3)
    top1 = tmp_path / "top1"
    run("precompute", *common, "--top-k", "1", "--out", top1)
    run("precompute", *common, "--top-k", "10", "--out", top10)
    run("precompute", *common, "--out", dense)
    m = json.loads((top3 / "_manifest.json").read_text())
    assert m["schema_version"] == "2.11" and m["label_logit"] is True
    assert "label_logit" not in json.loads((dense / "_manifest.json").read_text())

    x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).astype(np.float32).reshape(-1, 1, 28, 28)
    logits = ort.InferenceSession(str(TEACHER), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    labels = t.column("label").to_numpy()
    stored = pq.read_table(sorted(top3.glob("part-*.parquet"))).sort_by("id")
    assert stored.schema.field("label_logit").type == pa.float32() and stored.schema.field("label_logit").nullable
    np.testing.assert_allclose(stored["label_logit"].to_numpy(), logits[np.arange(len(labels)), labels], atol=1e-5)
    # Where the teacher ranks the label below its top 3, the label's logit is below the third.
    outside = np.array([lab not in idx for lab, idx in zip(labels, stored["topk_index"].to_pylist())])
    kth = np.array([v[-1] for v in stored["topk_logit"].to_pylist()])
    assert (stored["label_logit"].to_numpy()[outside] <= kth[outside]).all()
    assert pd.read_parquet(top3)["label_logit"].notna().all()
    # The Python reader gives the label's exact p_T (here T = 4).
    tk = softlabel.open_dataset(top3).topk()
    z = logits.astype(np.float64) / 4
    want = np.exp(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(axis=1)))
    order = np.argsort(softlabel.open_dataset(top3).ids())
    np.testing.assert_allclose(tk.label_p[order], want, rtol=1e-5)
    n = duckdb.sql(f"SELECT count(label_logit) FROM read_parquet('{top3}/*.parquet')").fetchall()[0][0]
    assert n == len(labels)
    assert "ok" in run("verify", top3).stdout

    # DKD on top-k labels holding every class trains as on dense labels (same losses within rounding).
    logs = {}
    for name, labels_dir in [("top10", top10), ("dense", dense), ("top3", top3), ("top1", top1)]:
        out = tmp_path / f"s-{name}"
        run("train", "--labels", labels_dir, "--hidden", "32", "--epochs", "2", "--batch-size", "100",
            "--loss", "dkd", "--out", out)
        logs[name] = [json.loads(line)["train_loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(logs["top10"], logs["dense"], rtol=1e-4)
    assert all(np.isfinite(logs["top3"] + logs["top1"])) and logs["top3"] != logs["dense"]
    # Top-1 labels: the label's logit is the only way DKD knows a misread digit's target probability.
    first = pq.read_table(sorted(top1.glob("part-*.parquet"))).sort_by("id")["topk_index"].to_pylist()
    assert sum(lab != idx[0] for lab, idx in zip(labels, first)) > 0

    # A row whose stored label logit disagrees with its top-k value is refused by every reader.
    part = top3 / "part-00001.parquet"
    table = pq.read_table(part)
    first = table["topk_index"].to_pylist()
    row = next(i for i, (lab, idx) in enumerate(zip(table["label"].to_pylist(), first)) if lab == idx[0])
    values = table["label_logit"].to_pylist()
    values[row] += 1.0
    field = table.schema.field("label_logit")
    table = table.set_column(table.schema.get_field_index("label_logit"), field, pa.array(values, type=field.type))
    pq.write_table(table, part, compression="zstd")
    reseal(top3, part)
    for cmd in (["verify", top3], ["train", "--labels", top3, "--epochs", "1", "--out", tmp_path / "bad"]):
        r = subprocess.run([BIN, "--quiet", *map(str, cmd)], capture_output=True, text=True)
        assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r.stderr
        assert f"part-00001.parquet: column 'label_logit', row {row}" in r.stderr, r.stderr
