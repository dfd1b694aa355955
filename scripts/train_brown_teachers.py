#!/usr/bin/env python3
"""Trains the two Brown-corpus sequence teachers (make_brown.py's files) with PyTorch CPU and exports them
to ONNX, both with outputs of rank 3, [batch, positions, classes]:

    python scripts/train_brown_teachers.py --task pos --data data/brown --out data/teachers/brown_pos.onnx
    python scripts/train_brown_teachers.py --task lm --data data/brown --out /tmp/brown_lm.onnx

pos: a BiLSTM tagger. Embedding(20002, 64, padding_idx=0) -> bidirectional LSTM(64, 128) -> Dropout 0.3 ->
Linear(256, 190). Input `tokens` int64 [batch, positions] (0 = padding); output `logits`, one tag
distribution per position. Cross-entropy over the tagged positions, Adam 2e-3, batch 64, 4 epochs, seed 0.

lm: a word-level LSTM language model with a vocabulary of 32,000. Embedding(32000, 128, padding_idx=0),
multiplied by the attention mask -> LSTM(128, 128) -> Linear(128, 32000). Inputs `input_ids` and
`attention_mask`, int64 [batch, positions]; output `logits` [batch, positions, 32000]: position t predicts
token t + 1 (so `precompute --targets next`). Cross-entropy over positions whose next token is not padding,
Adam 2e-3, batch 64, 1 epoch, seed 0.
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self, vocab, tags):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64, padding_idx=0)
        self.lstm = nn.LSTM(64, 128, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(256, tags)

    def forward(self, tokens):
        h, _ = self.lstm(self.embed(tokens))
        return self.out(self.drop(h))


class LanguageModel(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 128, padding_idx=0)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.out = nn.Linear(128, vocab)

    def forward(self, input_ids, attention_mask):
        e = self.embed(input_ids) * attention_mask.unsqueeze(-1).to(torch.float32)
        h, _ = self.lstm(e)
        return self.out(h)


def column(path, name, dtype=np.int64):
    t = pq.read_table(path)
    return torch.from_numpy(np.stack(t.column(name).to_numpy(zero_copy_only=False)).astype(dtype))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["pos", "lm"], required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    if a.task == "pos":
        x, y = column(a.data / "pos-train.parquet", "tokens"), column(a.data / "pos-train.parquet", "tags")
        tx, ty = column(a.data / "pos-test.parquet", "tokens"), column(a.data / "pos-test.parquet", "tags")
        tags = len(json.loads((a.data / "pos-tags.json").read_text()))
        model = Tagger(len(json.loads((a.data / "pos-vocab.json").read_text())), tags)
        epochs = a.epochs or 4
    else:
        x = column(a.data / "lm-train.parquet", "tokens")
        tx = column(a.data / "lm-test.parquet", "tokens")
        # Position t predicts token t + 1; the last position and those before padding predict nothing.
        shift = lambda t: torch.cat([t[:, 1:], torch.zeros_like(t[:, :1])], 1).masked_fill(
            torch.cat([t[:, 1:], torch.zeros_like(t[:, :1])], 1) == 0, -1)
        y, ty = shift(x), shift(tx)
        tags = 32000
        model = LanguageModel(tags)
        epochs = a.epochs or 1
    run = (lambda m, t: m(t)) if a.task == "pos" else (lambda m, t: m(t, (t != 0).long()))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    log = []
    for epoch in range(epochs):
        model.train()
        start = time.time()
        perm = torch.randperm(len(x))
        for b in range(0, len(x), 64):
            idx = perm[b:b + 64]
            out = run(model, x[idx])
            loss = nn.functional.cross_entropy(out.reshape(-1, tags), y[idx].reshape(-1), ignore_index=-1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        correct, total, nll = 0, 0, 0.0
        with torch.no_grad():
            for b in range(0, len(tx), 256):
                out, yy = run(model, tx[b:b + 256]), ty[b:b + 256]
                keep = yy >= 0
                correct += int((out.argmax(-1)[keep] == yy[keep]).sum())
                total += int(keep.sum())
                nll += float(nn.functional.cross_entropy(out[keep], yy[keep], reduction="sum"))
        entry = {"epoch": epoch + 1, "test_tokens": total, "test_accuracy": correct / total,
                 "test_perplexity": math.exp(nll / total), "seconds": round(time.time() - start, 1)}
        log.append(entry)
        print(json.dumps(entry), flush=True)
    model.eval()
    if a.task == "pos":
        args, names = (tx[:2],), ["tokens"]
    else:
        args, names = (tx[:2], (tx[:2] != 0).long()), ["input_ids", "attention_mask"]
    axes = {n: {0: "batch", 1: "positions"} for n in names + ["logits"]}
    torch.onnx.export(model, args, str(a.out), input_names=names, output_names=["logits"], dynamic_axes=axes,
                      opset_version=17, dynamo=False)
    a.out.with_suffix(".train.log").write_text("\n".join(json.dumps(l) for l in log) + "\n")


if __name__ == "__main__":
    main()
