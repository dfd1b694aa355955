"""Read softlabel soft-label datasets and compute its distillation losses.

    import softlabel
    ds = softlabel.open_dataset("out/mnist/labels-train")      # or "s3://bucket/labels"
    x, y, p = ds.inputs(), ds.labels(), ds.soft(temperature=4.0)
    loss = softlabel.kd_loss(student_logits, ds, temperature=4.0, alpha=0.9).mean()

`softlabel.torch` (needs PyTorch) has the same losses for autograd and a `Dataset`.
"""
from .dataset import SchemaError, SoftLabels, TopK, checksum_of, logsumexp_t, open_dataset, softmax_t
from .losses import kd_dense, kd_loss, kd_sampled, kd_topk

__all__ = [
    "SchemaError",
    "SoftLabels",
    "TopK",
    "checksum_of",
    "kd_dense",
    "kd_loss",
    "kd_sampled",
    "kd_topk",
    "logsumexp_t",
    "open_dataset",
    "softmax_t",
]
__version__ = "0.1.0"
