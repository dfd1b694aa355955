"""`softlabel verify` on a dataset another tool changed consistently: the part rewritten with one wrong
`soft` value, its size/sha256 updated in the manifest and the manifest re-sealed with the checksum recipe
from SCHEMA.md. Only a full read can catch this; verify must name the file, column and row."""
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from softlabel_testing import reseal

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
    reseal(out, part)

    bad = subprocess.run([BIN, "verify", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "part-00001.parquet: column 'soft', row 5" in bad.stderr, bad.stderr
