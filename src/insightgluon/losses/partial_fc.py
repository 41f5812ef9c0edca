"""Partial FC (An et al. 2021, arXiv:2010.05222): a margin head on sampled class centres.

Each step keeps every class present in the batch and draws further classes uniformly
without replacement until ``round(sample_rate·C)`` centres are used; logits and the
softmax run over those centres only, so the FC costs scale with the sample rate.
With ``sample_rate = 1`` every class is kept, in order, and the head equals the full one.
"""
import mxnet as mx
import numpy as np
from mxnet import gluon

from insightgluon.errors import ConfigError
from insightgluon.losses.base import LOSSES, LossHead
from insightgluon.losses.margin import MarginHead


class PartialFCHead(LossHead, gluon.Block):
    """Wrap a normalised :class:`MarginHead` so each step uses sampled centres.

    Parameters
    ----------
    head : MarginHead
        Owns ``fc7_weight`` (C, emb) and the margin; must normalise (not plain softmax).
    sample_rate : float
        Fraction r of class centres per step, 0 < r ≤ 1.
    seed : int
        Seed of the negative-class sampler.

    Call ``head(embedding (N, emb), label (N,))`` → ``(loss (N,), logits (N, K))``,
    K = max(round(r·C), distinct labels in the batch). The columns of ``logits`` are the
    classes in ``last_classes`` (sorted); :meth:`accuracy` maps labels onto them.
    ``fc7_weight`` gets a dense gradient that is zero outside the sampled rows.
    """

    def __init__(self, head: MarginHead, sample_rate: float, seed: int = 0):
        super().__init__(prefix="")
        if not head.normalize:
            raise ConfigError("partial FC needs a normalised margin head, not plain softmax")
        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"partial FC: sample_rate={sample_rate} must be in (0, 1]")
        self.head = head
        self.register_child(head, "head")
        self.num_classes = head.num_classes
        self.num_sample = max(1, int(round(sample_rate * head.num_classes)))
        self._rng = np.random.default_rng(seed)
        self.last_classes = np.arange(self.num_classes)

    @property
    def needs_identity_batches(self):
        return self.head.needs_identity_batches

    @property
    def fc7_weight(self):
        return self.head.fc7_weight

    def set_step(self, step):
        self.head.set_step(step)

    def sample(self, label: np.ndarray) -> np.ndarray:
        """Sorted class ids for one step: all of ``label`` plus random others."""
        positive = np.unique(label)
        if positive.size >= self.num_sample:
            return positive
        if self.num_sample == self.num_classes:
            return np.arange(self.num_classes)
        score = self._rng.random(self.num_classes)
        score[positive] = 2.0  # positives always rank first
        chosen = np.argpartition(-score, self.num_sample - 1)[: self.num_sample]
        return np.sort(chosen)

    def forward(self, embedding, label):
        label_np = label.asnumpy().astype(np.int64)
        classes = self.sample(label_np)
        self.last_classes = classes
        ctx = embedding.context
        local = mx.nd.array(np.searchsorted(classes, label_np), ctx=ctx, dtype=embedding.dtype)
        weight = mx.nd.take(self.head.fc7_weight.data(ctx), mx.nd.array(classes, ctx=ctx))
        extra = self.head.extra_inputs(embedding)
        logits = self.head.margin_logits(mx.nd, embedding, local, weight, None, len(classes), *extra)
        return self.head.loss_from_logits(mx.nd, logits, local, embedding), logits

    def _local_labels(self, label) -> np.ndarray:
        """``label`` as column indices of the last forward pass's logits."""
        label_np = label.asnumpy() if isinstance(label, mx.nd.NDArray) else np.asarray(label)
        label_np = label_np.astype(np.int64)
        local = np.searchsorted(self.last_classes, label_np)
        local = np.minimum(local, len(self.last_classes) - 1)
        if not np.array_equal(self.last_classes[local], label_np):
            raise ValueError("partial FC accuracy: labels are not those of the last forward pass")
        return local

    def accuracy(self, logits, label):
        return super().accuracy(logits, self._local_labels(label))

    def correct(self, logits, label):
        local = mx.nd.array(self._local_labels(label), ctx=logits.context, dtype=logits.dtype)
        return super().correct(logits, local)


@LOSSES.register("partial-fc")
def _partial_fc(num_classes, emb_size, hyper):
    """ArcFace on sampled class centres; ``sample_rate`` defaults to 0.1."""
    rate = hyper.get("sample_rate", 0.1, low=0.0, high=1.0, low_open=True)
    return PartialFCHead(LOSSES.get("arcface")(num_classes, emb_size, hyper), rate,
                         seed=hyper.get("seed", 0, kind=int))
