#!/usr/bin/env python3
"""Train the MNIST teacher shipped as data/teachers/mnist_cnn.onnx.

A small VGG-style CNN trained with PyTorch (CPU) on data/mnist/train.parquet, with random shifts of up to
2 pixels (as in Hinton et al. 2015), then exported to ONNX. The ONNX model takes the raw pixels
(float32 [batch, 1, 28, 28], values 0..255) and outputs raw logits [batch, 10]; the /255 scaling is inside
the model, so softlabel feeds it the dataset's `image` column as is.

PyTorch is NOT a dependency of softlabel: install it in a throwaway virtualenv to retrain
(`pip install torch onnx onnxscript pyarrow numpy`), then:
    python scripts/train_teacher.py --data data/mnist --out data/teachers/mnist_cnn.onnx --epochs 8
"""
import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(path: Path):
    t = pq.read_table(path)
    x = np.stack(t.column("image").to_numpy(zero_copy_only=False)).astype(np.float32)
    y = t.column("label").to_numpy().astype(np.int64)
    return torch.from_numpy(x.reshape(-1, 1, 28, 28)), torch.from_numpy(y)


class Teacher(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3)
        self.b1 = nn.BatchNorm2d(32)
        self.c2 = nn.Conv2d(32, 32, 3)
        self.b2 = nn.BatchNorm2d(32)
        self.c3 = nn.Conv2d(32, 64, 3)
        self.b3 = nn.BatchNorm2d(64)
        self.c4 = nn.Conv2d(64, 64, 3)
        self.b4 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 4 * 4, 256)
        self.drop = nn.Dropout(0.4)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = x / 255.0
        x = F.relu(self.b1(self.c1(x)))
        x = F.max_pool2d(F.relu(self.b2(self.c2(x))), 2)
        x = F.relu(self.b3(self.c3(x)))
        x = F.max_pool2d(F.relu(self.b4(self.c4(x))), 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class HintonMLP(nn.Module):
    """Hinton et al. 2015's teacher: 784-1200-1200-10 ReLU MLP with dropout (0.2 on inputs, 0.5 on hidden units)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 1200)
        self.fc2 = nn.Linear(1200, 1200)
        self.fc3 = nn.Linear(1200, 10)
        self.drop_in = nn.Dropout(0.2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.drop_in(torch.flatten(x, 1) / 255.0)
        x = self.drop(F.relu(self.fc1(x)))
        x = self.drop(F.relu(self.fc2(x)))
        return self.fc3(x)


def jitter(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Shift each image by an integer offset in [-max_shift, max_shift] on both axes (zero fill)."""
    n = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for sx in range(2 * max_shift + 1):
        for sy in range(2 * max_shift + 1):
            m = (dx == sx) & (dy == sy)
            if m.any():
                out[m] = pad[m, :, sy : sy + 28, sx : sx + 28]
    return out


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return int((pred != y).sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data/mnist"))
    ap.add_argument("--out", type=Path, default=Path("data/teachers/mnist_cnn.onnx"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", choices=["cnn", "hinton-mlp"], default="cnn",
                    help="cnn: the demo teacher; hinton-mlp: 784-1200-1200-10 with dropout (Hinton et al. 2015)")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load(args.data / "train.parquet")
    xte, yte = load(args.data / "test.parquet")
    model = Teacher() if args.arch == "cnn" else HintonMLP()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * ((len(xtr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    print(f"arch {args.arch}, epochs {args.epochs}, lr {args.lr}, batch {args.batch_size}", flush=True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, seed {args.seed}", flush=True)
    for epoch in range(args.epochs):
        t0 = time.time()
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb = jitter(xtr[idx], gen)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        errs = evaluate(model, xte, yte)
        print(
            f"epoch {epoch + 1}/{args.epochs} loss {total / len(xtr):.4f} test_errors {errs} "
            f"test_acc {1 - errs / len(xte):.4%} time {time.time() - t0:.0f}s",
            flush=True,
        )

    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # The MLP takes the flat 784 pixels, as the dataset stores them; the CNN takes [batch, 1, 28, 28].
    dummy = torch.zeros(2, 1, 28, 28) if args.arch == "cnn" else torch.zeros(2, 784)
    torch.onnx.export(
        model,
        (dummy,),
        str(args.out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with torch.no_grad():
        logits = torch.cat([model(xte[i : i + 1000]) for i in range(0, len(xte), 1000)])
    spread = (logits.max(1).values - logits.min(1).values).mean().item()
    sha = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"exported {args.out} sha256 {sha}; final test errors {evaluate(model, xte, yte)}; "
          f"mean logit spread per row {spread:.1f}", flush=True)


if __name__ == "__main__":
    main()
