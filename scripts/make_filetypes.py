#!/usr/bin/env python3
"""A real byte-level task from this machine: the type of a file (by its extension) from its first bytes.

Walks system and package folders, keeps regular files of at least 64 bytes whose extension is one of
CLASSES (at most --per-class per class, taken in sorted path order after a seeded shuffle), drops
files whose first --length bytes equal another kept file's (so no test row is a copy of a training
row), and writes two Parquet files with columns

    id     uint64   row id
    bytes  fixed_size_list<int64>[L]   the first L bytes (0..255), padded with 256 past the end of the file
    label  int64    index into CLASSES
    path   string   where the bytes came from

split 80/20 by a hash of the path. The class names go to classes.json (for --class-names).

    python scripts/make_filetypes.py --out data/filetypes
"""
import argparse
import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# Class -> extensions.
CLASSES = {
    "python": ["py"],
    "python-bytecode": ["pyc"],
    "gzip": ["gz"],
    "c-header": ["h", "hpp"],
    "yaml": ["yaml", "yml"],
    "png": ["png"],
    "gettext-mo": ["mo"],
    "xml": ["xml"],
    "json": ["json"],
    "vim-script": ["vim"],
    "perl": ["pl", "pm"],
    "javascript": ["js"],
    "shared-object": ["so"],
    "svg": ["svg"],
}
PAD = 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--roots", nargs="+", default=["/usr", "/etc", "/var/lib", "/opt"])
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--per-class", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    by_ext = {e: c for c, exts in CLASSES.items() for e in exts}
    found = {c: [] for c in CLASSES}
    for root in args.roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for f in sorted(filenames):
                ext = f.rsplit(".", 1)[-1] if "." in f else ""
                if ext in by_ext:
                    p = os.path.join(dirpath, f)
                    if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) >= 64:
                        found[by_ext[ext]].append(p)
    rng = random.Random(args.seed)
    rows, seen = [], set()
    names = list(CLASSES)
    for label, c in enumerate(names):
        paths = sorted(found[c])
        rng.shuffle(paths)
        kept = 0
        for p in paths:
            if kept >= args.per_class:
                break
            try:
                with open(p, "rb") as fh:
                    head = fh.read(args.length)
            except OSError:
                continue
            if head in seen:
                continue
            seen.add(head)
            ids = np.full(args.length, PAD, np.int64)
            ids[: len(head)] = np.frombuffer(head, np.uint8)
            rows.append((p, ids, label))
            kept += 1
        print(f"{c:16s} {len(found[c]):6d} found, {kept:5d} kept")
    args.out.mkdir(parents=True, exist_ok=True)
    split = {"train": [], "test": []}
    for p, ids, label in rows:
        h = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16)
        split["test" if h % 5 == 0 else "train"].append((p, ids, label))
    for name, part in split.items():
        x = np.stack([r[1] for r in part])
        table = pa.table(
            {
                "id": pa.array(np.arange(len(part), dtype=np.uint64)),
                "bytes": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), args.length),
                "label": pa.array([r[2] for r in part], pa.int64()),
                "path": pa.array([r[0] for r in part]),
            }
        )
        pq.write_table(table, args.out / f"{name}.parquet")
        print(f"{name}: {len(part)} rows")
    (args.out / "classes.json").write_text(json.dumps(names))


if __name__ == "__main__":
    main()
