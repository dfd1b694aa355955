"""`softlabel verify` on a dataset another tool changed consistently: the part rewritten with one wrong
`soft` value, its size/sha256 updated in the manifest and the manifest re-sealed with the checksum recipe
from SCHEMA.md. Only a full read can catch this; verify must name the file, column and row."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOFTLABEL_BIN", str(ROOT / "target" / "release" / "softlabel"))
FX = Path(os.environ.get("SOFTLABEL_FIXTURES", str(ROOT / "target" / "fixtures")))


def test_verify_passes_then_names_a_corrupted_soft_value(tmp_path):
    out = tmp_path / "labels"
    subprocess.run([BIN, "--quiet", "precompute", "--teacher", str(FX / "linear.onnx"), "--data", str(FX / "small.parquet"),
                    "--temperature", "2", "--out", str(out), "--rows-per-part", "100"], check=True, stdout=subprocess.DEVNULL)
    ok = subprocess.run([BIN, "verify", str(out), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["rows"] == 200

    part = out / "part-00001.parquet"
    table = pq.read_table(part)
    soft = table["soft"].to_pylist()
    soft[5] = [0.5, 0.25, 0.25]
    field = table.schema.field("soft")
    table = table.set_column(table.schema.get_field_index("soft"), field, pa.array(soft, type=field.type))
    pq.write_table(table, part, compression="zstd")
    manifest = json.loads((out / "_manifest.json").read_text())
    for p in manifest["parts"]:
        if p["file"] == part.name:
            p["bytes"] = part.stat().st_size
            p["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    manifest["checksum"] = hashlib.sha256(
        json.dumps(manifest | {"checksum": ""}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2))

    bad = subprocess.run([BIN, "verify", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "part-00001.parquet: column 'soft', row 5" in bad.stderr, bad.stderr
