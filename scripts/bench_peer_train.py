#!/usr/bin/env python3
"""The PyTorch peer for `softlabel train`: the script a user would write without softlabel. Loads a
softlabel dataset (dense) into memory with pyarrow, standardises the inputs once (softlabel does it per
batch), then trains the same MLP (or CNN: --student cnn --channels 16,32, 3x3 convolutions with padding 1,
ReLU and 2x2 max-pooling, flattened into the --hidden layers) with the same loss, optimizer, schedule, batch size and thread count:
alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE, Adam (or --optimizer sgd: SGD with
momentum 0.9, lr 0.1, as softlabel's sgd), cosine decay per step. With top-k labels (--top-k) the KL is
over the k stored classes plus the residual bucket of the others, as softlabel's top-k loss, in float32.
Prints one JSON line with the seconds of every epoch. Used by scripts/bench.

    bench_peer_train.py LABELS_DIR --hidden 800,800 --epochs 3 --batch-size 128 --threads 1 -T 4 --alpha 0.9
    bench_peer_train.py LABELS_DIR --student cnn --channels 16,32 --hidden 48 --image 1,28,28 ...
"""
import argparse
import json
import time

import numpy as np
import pyarrow.dataset as pds
import torch
import torch.nn as nn
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("labels")
    ap.add_argument("--hidden", default="800,800")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-T", "--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--student", default="mlp", choices=["mlp", "cnn"])
    ap.add_argument("--channels", default="16,32")
    ap.add_argument("--image", default="1,28,28")
    ap.add_argument("--batch-norm", action="store_true", help="BatchNorm2d after each convolution (no conv bias)")
    ap.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    ap.add_argument("--top-k", action="store_true", help="the labels are top-k (topk_index, topk_logit, logsumexp_t)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    T, alpha = a.temperature, a.alpha
    stored = ["topk_index", "topk_logit", "logsumexp_t"] if a.top_k else ["logits"]
    t = pds.dataset(a.labels).to_table(columns=["input", "label", *stored])
    x = np.stack(t["input"].to_numpy(zero_copy_only=False)).astype(np.float32)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
    x = torch.from_numpy(x)
    y = torch.from_numpy(t["label"].to_numpy().astype(np.int64))
    column = lambda c: np.stack(t[c].to_numpy(zero_copy_only=False))
    if a.top_k:
        index = torch.from_numpy(column("topk_index").astype(np.int64))
        # p_T of the stored classes (exact), the residual mass of the others, and its log.
        p_top = torch.from_numpy(np.exp(column("topk_logit") / T - t["logsumexp_t"].to_numpy()[:, None])
                                 .astype(np.float32))
        residual = (1 - p_top.sum(1)).clamp(min=0)
        log_p_top, log_residual = torch.log(p_top.clamp(min=1e-30)), torch.log(residual.clamp(min=1e-30))
        classes = int(pds.dataset(a.labels).schema.metadata[b"softlabel.num_classes"])
    else:
        teacher = torch.from_numpy(column("logits").astype(np.float32))
        log_p = F.log_softmax(teacher / T, dim=1)
        classes = teacher.shape[1]
    hidden = [int(h) for h in a.hidden.split(",") if h]
    layers = []
    if a.student == "cnn":
        c, h, w = map(int, a.image.split(","))
        x = x.reshape(-1, c, h, w)
        for cout in map(int, a.channels.split(",")):
            if a.batch_norm:
                layers += [nn.Conv2d(c, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
            else:
                layers.append(nn.Conv2d(c, cout, 3, padding=1))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = cout, h // 2, w // 2
        layers.append(nn.Flatten())
        features = c * h * w
    else:
        features = x.shape[1]
    dims = [features, *hidden, classes]
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    n = x.shape[0]
    steps = a.epochs * ((n + a.batch_size - 1) // a.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    seconds = []
    for _ in range(a.epochs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, a.batch_size):
            idx = perm[i:i + a.batch_size]
            z = model(x[idx])
            log_q = F.log_softmax(z / T, dim=1)
            if a.top_k:
                i, p = index[idx], p_top[idx]
                kl_top = (p * (log_p_top[idx] - log_q.gather(1, i))).sum(1)
                log_q_rest = torch.logsumexp(log_q.scatter(1, i, float("-inf")), dim=1)
                r = residual[idx]
                kd = (kl_top + r * (log_residual[idx] - log_q_rest)).mean()
            else:
                kd = F.kl_div(log_q, log_p[idx], log_target=True, reduction="batchmean")
            loss = alpha * T * T * kd + (1 - alpha) * F.cross_entropy(z, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"rows": n, "epoch_seconds": seconds, "torch": torch.__version__, "threads": a.threads}))


if __name__ == "__main__":
    main()
