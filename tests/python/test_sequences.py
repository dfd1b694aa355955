"""Sequence teachers (schema 2.12): outputs [batch, positions, classes] stored one row per (id, unmasked
position). Checked against Python onnxruntime on the fixtures' tagger (dense, tags from a list column) and
30,000-word language model (top-k 32, `--targets next`, an attention-mask input derived from `--pad-id`);
read by pyarrow, polars and DuckDB; resumed byte for byte; tampered positions and tokens refused naming
file, column and row; a window student trained and evaluated per token."""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from softlabel_testing import reseal

import softlabel

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
FX = Path(os.environ.get("SOFTLABEL_FIXTURES", ROOT / "target" / "fixtures"))


def run(*args, check=True):
    return subprocess.run([BIN, "--quiet", *map(str, args)], check=check, capture_output=True, text=True)


def tokens_of(path):
    t = pq.read_table(path)
    return t["id"].to_numpy(), np.stack(t["tokens"].to_numpy(zero_copy_only=False)).astype(np.int64), t


def tagger(tmp_path, *extra, name="tagger"):
    out = tmp_path / name
    run("precompute", "--teacher", FX / "seq_tagger.onnx", "--data", FX / "seq_tagger.parquet", "--input-column",
        "tokens", "--label-column", "tags", "--pad-id", "0", "-T", "2", "--out", out, *extra)
    return out


def test_tagger_rows_are_the_unmasked_positions_with_their_tags_and_the_teachers_logits(tmp_path):
    out = tagger(tmp_path)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["schema_version"] == "2.12"
    assert m["sequence"] == {"length": 12, "targets": "same", "pad_id": 0}
    assert m["input"]["width"] == 1 and m["num_classes"] == 5
    ids, tokens, src = tokens_of(FX / "seq_tagger.parquet")
    tags = np.stack(src["tags"].to_numpy(zero_copy_only=False)).astype(np.int64)
    logits = ort.InferenceSession(str(FX / "seq_tagger.onnx")).run(None, {"tokens": tokens})[0]
    r, p = np.nonzero(tokens != 0)  # row-major: the stored order
    t = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert t.schema.field("position").type == pa.uint32()
    assert t.num_rows == m["rows"] == len(r) and 0 not in t["id"].to_numpy()  # row 0 is all padding
    np.testing.assert_array_equal(t["id"].to_numpy(), ids[r])
    np.testing.assert_array_equal(t["position"].to_numpy(), p)
    np.testing.assert_array_equal(np.stack(t["input"].to_numpy(zero_copy_only=False))[:, 0], tokens[r, p])
    want = np.where(tags[r, p] >= 0, tags[r, p], -1)
    np.testing.assert_array_equal(t["label"].fill_null(-1).to_numpy(), want)
    assert m["labeled_rows"] == int((want >= 0).sum()) < len(r)
    np.testing.assert_allclose(np.stack(t["logits"].to_numpy(zero_copy_only=False)), logits[r, p], atol=1e-6)
    # The Python reader: positions and the manifest's sequence.
    ds = softlabel.open_dataset(out)
    np.testing.assert_array_equal(ds.positions(), p)
    assert ds.sequence["targets"] == "same"
    # polars and DuckDB: the tokens per sequence are its unmasked positions, read without any explode.
    per_id = pl.read_parquet(out / "part-*.parquet").group_by("id").agg(pl.len().alias("n")).sort("id")
    lengths = (tokens != 0).sum(1)
    np.testing.assert_array_equal(per_id["n"].to_numpy(), lengths[lengths > 0])
    q = duckdb.sql(f"SELECT id, max(position) + 1 AS n FROM read_parquet('{out}/part-*.parquet') GROUP BY id ORDER BY id")
    np.testing.assert_array_equal(q.fetchnumpy()["n"], lengths[lengths > 0])
    assert "ok" in run("verify", out).stdout


def test_language_model_top_k_is_exact_against_onnxruntime(tmp_path):
    out = tmp_path / "lm"
    run("precompute", "--teacher", FX / "seq_lm.onnx", "--data", FX / "seq_lm.parquet", "--input-column", "tokens",
        "--targets", "next", "--pad-id", "0", "--mask-input", "attention_mask", "--top-k", "32", "-T", "2",
        "--vocab-file", FX / "seq_lm.parquet", "--batch-size", "16", "--out", out)
    m = json.loads((out / "_manifest.json").read_text())
    assert m["sequence"]["targets"] == "next" and m["sequence"]["mask_input"] == "attention_mask"
    assert m["sequence"]["vocab_sha256"] == hashlib.sha256((FX / "seq_lm.parquet").read_bytes()).hexdigest()
    assert m["num_classes"] == 30000 and m["label_logit"] is True
    _, tokens, _ = tokens_of(FX / "seq_lm.parquet")
    mask = (tokens != 0).astype(np.int64)
    z = ort.InferenceSession(str(FX / "seq_lm.onnx")).run(None, {"input_ids": tokens, "attention_mask": mask})[0]
    r, p = np.nonzero(mask)
    z = z[r, p].astype(np.float64)
    t = pq.read_table(sorted(out.glob("part-*.parquet")))
    assert t.schema.field("topk_index").type == pa.list_(pa.field("item", pa.uint16(), nullable=False), 32)
    index = np.stack(t["topk_index"].to_numpy(zero_copy_only=False)).astype(np.int64)
    value = np.stack(t["topk_logit"].to_numpy(zero_copy_only=False)).astype(np.float64)
    order = np.argsort(-z, axis=1, kind="stable")[:, :32]
    np.testing.assert_array_equal(index, order)
    np.testing.assert_allclose(value, np.take_along_axis(z, order, 1), rtol=1e-6, atol=1e-6)
    lse = np.log(np.exp(z / 2 - (z / 2).max(1, keepdims=True)).sum(1)) + (z / 2).max(1)
    np.testing.assert_allclose(t["logsumexp_t"].to_numpy(), lse, rtol=1e-9, atol=1e-6)
    # Exact p_T for the stored classes, and the residual mass the other 29,968 hold.
    tk = softlabel.open_dataset(out).topk()
    p_full = np.exp(z / 2 - lse[:, None])
    np.testing.assert_allclose(tk.p, np.take_along_axis(p_full, order, 1), rtol=1e-5)
    np.testing.assert_allclose(tk.residual, 1 - np.take_along_axis(p_full, order, 1).sum(1), atol=1e-6)
    # Labels: the next token, none where the next position is padding or past the end.
    nxt = np.where((p + 1 < tokens.shape[1]) & (np.pad(tokens, ((0, 0), (0, 1)))[r, p + 1] != 0),
                   np.pad(tokens, ((0, 0), (0, 1)))[r, p + 1], -1)
    np.testing.assert_array_equal(t["label"].fill_null(-1).to_numpy(), nxt)
    has = nxt >= 0
    np.testing.assert_allclose(t["label_logit"].to_numpy(zero_copy_only=False)[has], z[has, nxt[has]], atol=1e-5)
    assert "ok" in run("verify", out).stdout


def test_sampled_draws_per_position_are_keyed_by_id_and_position(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--teacher", FX / "seq_lm.onnx", "--data", FX / "seq_lm.parquet", "--input-column", "tokens",
              "--targets", "next", "--pad-id", "0", "--mask-input", "attention_mask", "--sample-k", "16", "-T", "1"]
    run("precompute", *common, "--batch-size", "7", "--out", a)
    run("precompute", *common, "--batch-size", "64", "--rows-per-part", "200", "--out", b)
    ta = pq.read_table(sorted(a.glob("part-*.parquet")))
    tb = pq.read_table(sorted(b.glob("part-*.parquet")))
    assert ta.schema.field("sample_index").type.value_type == pa.uint16()
    # The draws depend on (seed, id, position) only, not on batching or parts; positions of one id differ.
    assert ta["sample_index"].equals(tb["sample_index"])
    first = ta.filter(pa.compute.equal(ta["id"], 1))
    draws = first["sample_index"].to_pylist()
    assert len({tuple(d) for d in draws}) > 1
    assert "ok" in run("verify", a).stdout


def test_a_resumed_sequence_run_equals_a_clean_one(tmp_path):
    clean = tagger(tmp_path, "--rows-per-part", "100", "--batch-size", "16", name="clean")
    m = json.loads((clean / "_manifest.json").read_text())
    assert len(m["parts"]) > 2
    # Parts never split a sequence: each part ends with the last position of its last id.
    ends = [pq.read_table(clean / p["file"]) for p in m["parts"]]
    for a, b in zip(ends, ends[1:]):
        assert a["id"][-1].as_py() != b["id"][0].as_py()
    # Interrupted after the first part: its journal, that part, and a half-written one.
    cut = tmp_path / "cut"
    shutil.copytree(clean, cut)
    first = m["parts"][0]
    part0 = pq.read_table(cut / first["file"])
    done = dict(m, parts=[first], rows=first["rows"], labeled_rows=part0.num_rows - part0["label"].null_count,
                checksum="")
    (cut / "_manifest.json").unlink()
    for p in m["parts"][1:]:
        (cut / p["file"]).unlink()
    (cut / ".part-00001.parquet.tmp").write_bytes(b"PAR1 half")
    (cut / "_progress.json").write_text(json.dumps({
        "format": "softlabel-progress", "source_rows_done": first["max_id"] + 1, "batch_size": 16,
        "rows_per_part": 100, "manifest": done}))
    run("precompute", "--teacher", FX / "seq_tagger.onnx", "--data", FX / "seq_tagger.parquet", "--input-column",
        "tokens", "--label-column", "tags", "--pad-id", "0", "-T", "2", "--out", cut, "--rows-per-part", "100",
        "--batch-size", "16", "--resume")
    assert (cut / "_manifest.json").read_bytes() == (clean / "_manifest.json").read_bytes()
    for p in m["parts"]:
        assert (cut / p["file"]).read_bytes() == (clean / p["file"]).read_bytes()


def rewrite(out, column, change):
    part = sorted(out.glob("part-*.parquet"))[0]
    t = pq.read_table(part)
    values = t[column].to_pylist()
    change(values)
    i = t.schema.get_field_index(column)
    t = t.set_column(i, t.schema.field(column), pa.array(values, t.schema.field(column).type))
    pq.write_table(t, part)
    reseal(out, part)
    return part


@pytest.mark.parametrize("column,change,message", [
    ("position", lambda v: v.__setitem__(slice(2, 4), [v[3], v[2]]), "position 2 follows position 3"),
    ("position", lambda v: v.__setitem__(3, 40), "position 40 is outside the sequence's 12 positions"),
    ("input", lambda v: v.__setitem__(5, [0]), "token 0 is the pad id"),
])
def test_tampered_positions_and_tokens_are_refused_naming_file_column_and_row(tmp_path, column, change, message):
    out = tagger(tmp_path)
    part = rewrite(out, column, change)
    for cmd in (["verify", out], ["train", "--labels", out, "--out", tmp_path / "s", "--student", "embed", "--bag",
                                   "concat", "--window", "1"]):
        r = run(*cmd, check=False)
        assert r.returncode == 1, r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert str(part) in line and f"column '{column}'" in line and "row" in line and message in line, line


def test_refusals_name_what_is_wrong(tmp_path):
    # A tagger's tags with --targets next; sequence flags for a classifier; a student of another vocabulary.
    r = run("precompute", "--teacher", FX / "seq_tagger.onnx", "--data", FX / "seq_tagger.parquet", "--input-column",
            "tokens", "--label-column", "tags", "--targets", "next", "-T", "1", "--out", tmp_path / "a", check=False)
    assert r.returncode == 1 and "--targets next labels each position with the next token" in r.stderr
    r = run("precompute", "--teacher", FX / "linear.onnx", "--data", FX / "small.parquet", "--pad-id", "0", "-T", "1",
            "--out", tmp_path / "b", check=False)
    assert r.returncode == 1 and "are for sequence teachers" in r.stderr
    out = tmp_path / "lm"
    run("precompute", "--teacher", FX / "seq_lm.onnx", "--data", FX / "seq_lm.parquet", "--input-column", "tokens",
        "--targets", "next", "--pad-id", "0", "--mask-input", "attention_mask", "--top-k", "4", "-T", "1", "--out", out)
    r = run("train", "--labels", out, "--out", tmp_path / "s", "--student", "embed", "--bag", "concat", "--vocab",
            "1000", "--epochs", "1", check=False)
    assert r.returncode == 1 and "1000" in r.stderr and "30000" in r.stderr, r.stderr


def test_a_window_student_learns_the_tagger_and_is_evaluated_per_token(tmp_path):
    out = tagger(tmp_path)
    student = tmp_path / "student"
    run("train", "--labels", out, "--out", student, "--student", "embed", "--bag", "concat", "--window", "1",
        "--embed-dim", "16", "--pad-id", "0", "--hidden", "32", "--epochs", "60", "--batch-size", "32", "--lr", "0.01",
        "--alpha", "0.5", "--seed", "0")
    info = json.loads((student / "student.json").read_text())
    assert info["dims"][0] == 3 and info["input_shape"] == [3]  # t-1, t, t+1
    r = json.loads(run("eval", "--student", student, "--data", out, "--json").stdout)
    m = json.loads((out / "_manifest.json").read_text())
    assert r["tokens"] == m["rows"] and r["window"] == 1 and r["targets"] == "same"
    # The tags are the teacher's top class of each token alone, which the student can learn: 703 tokens,
    # 600 labelled.
    assert r["accuracy"] > 0.9 and r["agreement"] > 0.9 and r["kl"] is not None, r
    # Exported with the teacher's signature, [batch, positions] ids in, [batch, positions, classes] out, it
    # computes what eval measured: the same KL to the teacher over the unmasked positions.
    onnx_path = tmp_path / "student.onnx"
    run("export", "--student", student, "--out", onnx_path)
    s = ort.InferenceSession(str(onnx_path))
    assert [(i.name, i.shape) for i in s.get_inputs()] == [("tokens", ["batch", "positions"])]
    _, tokens, _ = tokens_of(FX / "seq_tagger.parquet")
    z = s.run(["logits"], {"tokens": tokens})[0]
    assert z.shape == (*tokens.shape, 5)
    r_, p_ = np.nonzero(tokens != 0)
    q = z[r_, p_].astype(np.float64)
    tz = np.stack(pq.read_table(sorted(out.glob("part-*.parquet")))["logits"].to_numpy(zero_copy_only=False))
    tz = tz.astype(np.float64)
    log_softmax = lambda a: a - a.max(1, keepdims=True) - np.log(np.exp(a - a.max(1, keepdims=True)).sum(1, keepdims=True))
    kl = (np.exp(log_softmax(tz)) * (log_softmax(tz) - log_softmax(q))).sum(1).mean()
    assert abs(kl - r["kl"]) < 1e-6, (kl, r["kl"])
    r = run("export", "--student", student, "--out", tmp_path / "int8.onnx", "--int8", "--calibration", out, check=False)
    assert r.returncode == 1 and "--int8 is not built for sequence students" in r.stderr


def test_a_causal_language_model_student_exports_with_the_mask_input(tmp_path):
    out = tmp_path / "lm"
    run("precompute", "--teacher", FX / "seq_lm.onnx", "--data", FX / "seq_lm.parquet", "--input-column", "tokens",
        "--targets", "next", "--pad-id", "0", "--mask-input", "attention_mask", "--top-k", "8", "-T", "1", "--out", out)
    student = tmp_path / "student"
    run("train", "--labels", out, "--out", student, "--student", "embed", "--bag", "concat", "--window", "2",
        "--embed-dim", "4", "--vocab", "30000", "--hidden", "8", "--epochs", "1", "--seed", "0")
    r = json.loads(run("eval", "--student", student, "--data", out, "--json").stdout)
    assert r["window"] == 2 and r["targets"] == "next" and r["tokens"] == json.loads((out / "_manifest.json").read_text())["rows"]
    onnx_path = tmp_path / "student.onnx"
    run("export", "--student", student, "--out", onnx_path)
    s = ort.InferenceSession(str(onnx_path))
    assert [i.name for i in s.get_inputs()] == ["input_ids", "attention_mask"]
    _, tokens, _ = tokens_of(FX / "seq_lm.parquet")
    mask = (tokens != 0).astype(np.int64)
    z = s.run(["logits"], {"input_ids": tokens, "attention_mask": mask})[0]
    # Causal: changing the tokens after position t leaves the outputs at t (the student never sees t + 1).
    later = tokens.copy()
    later[:, 6:] = np.where(later[:, 6:] != 0, 7, 0)
    z2 = s.run(["logits"], {"input_ids": later, "attention_mask": mask})[0]
    np.testing.assert_array_equal(z[:, :6], z2[:, :6])
    assert not np.allclose(z[:, 6:], z2[:, 6:])
    # Its top class agrees with the teacher's top stored class as eval counted.
    r_, p_ = np.nonzero(mask)
    stored = pq.read_table(sorted(out.glob("part-*.parquet")))
    top = np.stack(stored["topk_index"].to_numpy(zero_copy_only=False))[:, 0]
    assert abs((z[r_, p_].argmax(1) == top).mean() - r["agreement"]) < 1e-9


def test_shards_merge_to_the_whole_dataset(tmp_path):
    whole = tagger(tmp_path, name="whole")
    shards = [tagger(tmp_path, "--shard", f"{i}/2", name=f"shard{i}") for i in range(2)]
    merged = tmp_path / "merged"
    run("merge", "--out", merged, *shards)
    assert "ok" in run("verify", merged).stdout
    key = [("id", "ascending"), ("position", "ascending")]
    a = pq.read_table(sorted(merged.glob("part-*.parquet"))).sort_by(key)
    b = pq.read_table(sorted(whole.glob("part-*.parquet")))
    assert a.num_rows == b.num_rows and a.equals(b)
    assert "one stored row per unmasked position; targets same" in run("inspect", whole).stdout
