"""Helpers shared by the Python tests."""
import hashlib
import json
from pathlib import Path


def reseal(out: Path, part: Path):
    """Record `part`'s new size and sha256 in `out`'s manifest and recompute the manifest checksum with the
    recipe in SCHEMA.md: what a tool that rewrites a part consistently would do."""
    manifest = json.loads((out / "_manifest.json").read_text())
    for p in manifest["parts"]:
        if p["file"] == part.name:
            p["bytes"] = part.stat().st_size
            p["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    manifest["checksum"] = hashlib.sha256(
        json.dumps(manifest | {"checksum": ""}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2))
