"""Margin heads: ``fc7_weight`` plus a margin applied to the target class's cos θ.

Every margin is a small function of the target ``cos_t`` (unscaled) returning the
penalised cosine; :class:`MarginHead` owns the classifier weight, computes
``cos θ_j`` between the L2-normalised embedding and each L2-normalised weight row,
replaces the target column by the margin function's value and multiplies by ``s``.

Numerical guard (deliberate deviation from the 2018 code): the legacy graph took
``sqrt(1 - cos²)`` and ``arccos(cos)`` unclipped, which gives NaN once float32
rounding pushes ``|cos θ|`` past 1 and an infinite gradient at ``cos θ = ±1``.
Here ``sin²θ`` is clipped to ``[SIN2_MIN, 1]`` and ``arccos`` reads ``cos θ``
clipped to ``±(1 - COS_EDGE)``; inside those bounds the values are the legacy ones.
"""
import math
from functools import partial

import mxnet as mx
from mxnet import gluon

from insightgluon.losses.base import LOSSES, Hyper, LossHead, softmax_cross_entropy

#: Smallest sin²θ used by ArcFace-style margins (keeps d sinθ/d cosθ ≤ 1e3).
SIN2_MIN = 1e-6
#: arccos reads cos θ clipped to ±(1 - COS_EDGE) (keeps d θ/d cosθ ≤ ~707).
COS_EDGE = 1e-6


def safe_arccos(F, cos_t):
    """θ = arccos(cos θ) with cos θ clipped away from ±1 so the gradient stays finite."""
    return F.arccos(F.clip(cos_t, -1.0 + COS_EDGE, 1.0 - COS_EDGE))


def cosface_margin(F, cos_t, m):
    """CosFace / AM-Softmax: ``cos θ - m``."""
    return cos_t - m


def arcface_margin(F, cos_t, m, easy_margin=False):
    """ArcFace: ``cos(θ + m)``, with the legacy fallback for θ + m > π.

    ``m`` is a float or a per-sample array (MagFace). Unless ``easy_margin``,
    the margin applies while ``cos θ > cos(π - m)`` and otherwise the target
    becomes ``cos θ - m·sin(π - m)`` (a CosFace-style penalty that keeps the
    target logit decreasing in θ). With ``easy_margin`` it applies while
    ``cos θ > 0`` and the target is left unchanged otherwise.
    """
    cos_m, sin_m = (math.cos(m), math.sin(m)) if isinstance(m, float) else (F.cos(m), F.sin(m))
    sin_t = F.sqrt(F.clip(1.0 - cos_t * cos_t, SIN2_MIN, 1.0))
    cos_tm = cos_t * cos_m - sin_t * sin_m
    if easy_margin:
        return F.where(cos_t > 0, cos_tm, cos_t)
    threshold = -cos_m  # cos(π - m)
    fallback = sin_m * m  # sin(π - m)·m
    return F.where(cos_t > threshold, cos_tm, cos_t - fallback)


def combined_margin(F, cos_t, m1, m2, m3):
    """Combined margin ``cos(m1·θ + m2) - m3`` with the legacy special cases.

    ``(1, 0, m3)`` is computed as CosFace (no arccos), ``m1 == 1`` skips the
    multiply, and a non-positive ``m2`` or ``m3`` is skipped, as in the 2018 graph.
    There is no θ + m > π fallback.
    """
    if m1 == 1.0 and m2 == 0.0:
        return cosface_margin(F, cos_t, m3)
    theta = safe_arccos(F, cos_t)
    if m1 != 1.0:
        theta = theta * m1
    if m2 > 0.0:
        theta = theta + m2
    body = F.cos(theta)
    if m3 > 0.0:
        body = body - m3
    return body


class MarginHead(LossHead, gluon.HybridBlock):
    """Classifier weight ``fc7_weight`` (C, emb) with a margin on the target logit.

    Parameters
    ----------
    num_classes, emb_size : int
    s : float
        Scale applied to the cosines (legacy ``--margin-s``).
    margin : callable or None
        ``margin(F, cos_t) -> penalised cos_t`` on the (N,) target cosines;
        None applies no margin (normalised softmax).
    normalize : bool
        Normalise embedding and weight rows (all losses but plain softmax).
    use_bias : bool
        Add ``fc7_bias`` (C,), lr_mult 2 and wd_mult 0 as legacy (plain softmax only).
    fc7_lr_mult, fc7_wd_mult : float
        Multipliers on the weight's learning rate and weight decay. Decay applies to the
        raw weight; the normalisation sits inside the graph, so the gradient reaches it.
    fc7_init : {"xavier", "normal"}
        ``xavier``: the legacy global initializer, Xavier(gaussian, factor_type="out",
        magnitude=2), i.e. N(0, 2/C); ``normal``: N(0, 0.01²) as the 2019 code.

    Call ``head(embedding (N, emb), label (N,))`` → ``(loss (N,), logits (N, C))``.
    """

    def __init__(self, num_classes, emb_size, s=64.0, margin=None, normalize=True,
                 use_bias=False, fc7_lr_mult=1.0, fc7_wd_mult=1.0, fc7_init="xavier"):
        super().__init__(prefix="")
        self.num_classes = int(num_classes)
        self.emb_size = int(emb_size)
        self.s = float(s)
        self._margin = margin
        self.normalize = normalize
        with self.name_scope():
            self.fc7_weight = self.params.get(
                "fc7_weight", shape=(self.num_classes, self.emb_size), init=_weight_init(fc7_init),
                lr_mult=fc7_lr_mult, wd_mult=fc7_wd_mult)
            self.fc7_bias = None
            if use_bias:
                self.fc7_bias = self.params.get(
                    "fc7_bias", shape=(self.num_classes,), init="zeros", lr_mult=2.0, wd_mult=0.0)

    def hybrid_forward(self, F, embedding, label, *extra, fc7_weight=None, fc7_bias=None):
        logits = self.margin_logits(F, embedding, label, fc7_weight, fc7_bias, self.num_classes, *extra)
        return self.loss_from_logits(F, logits, label, embedding), logits

    def extra_inputs(self, embedding):
        """Extra (NDArray) graph inputs after ``label``: per-step values such as SphereFace's β."""
        return ()

    def cosine(self, F, embedding, weight, num_classes):
        """cos θ_j between normalised embeddings and weight rows, (N, num_classes)."""
        x = F.L2Normalization(embedding, mode="instance")
        w = F.L2Normalization(weight, mode="instance")
        return F.FullyConnected(x, w, no_bias=True, num_hidden=num_classes)

    def penalise(self, F, cos, label, num_classes):
        """Replace the target column of ``cos`` (N, K) by ``margin(cos_t)``."""
        if self._margin is None:
            return cos
        cos_t = F.pick(cos, label, axis=1)
        delta = self._margin(F, cos_t) - cos_t
        one_hot = F.one_hot(label, depth=num_classes)
        return cos + F.broadcast_mul(one_hot, F.expand_dims(delta, axis=1))

    def margin_logits(self, F, embedding, label, weight, bias, num_classes, *extra):
        """Margin-penalised scaled logits (N, num_classes) for the given weight rows."""
        if not self.normalize:
            return _plain_fc(F, embedding, weight, bias, num_classes)
        return self.penalise(F, self.cosine(F, embedding, weight, num_classes), label, num_classes) * self.s

    def loss_from_logits(self, F, logits, label, embedding):
        """Per-sample loss (N,) from the margin logits; softmax cross-entropy by default."""
        return softmax_cross_entropy(F, logits, label)

    def plain_logits(self, embedding):
        """Logits without margin, (N, C), for the plain accuracy (imperative, NDArray)."""
        weight = self.fc7_weight.data(embedding.context)
        if not self.normalize:
            bias = None if self.fc7_bias is None else self.fc7_bias.data(embedding.context)
            return _plain_fc(mx.nd, embedding, weight, bias, self.num_classes)
        return self.cosine(mx.nd, embedding, weight, self.num_classes) * self.s


def _plain_fc(F, embedding, weight, bias, num_classes):
    if bias is None:
        return F.FullyConnected(embedding, weight, no_bias=True, num_hidden=num_classes)
    return F.FullyConnected(embedding, weight, bias, num_hidden=num_classes)


def _weight_init(name):
    if name == "xavier":
        return mx.init.Xavier(rnd_type="gaussian", factor_type="out", magnitude=2)
    if name == "normal":
        return mx.init.Normal(0.01)
    raise ValueError(f"fc7_init must be 'xavier' or 'normal', not {name!r}")


def head_options(hyper: Hyper):
    """The fc7 keyword arguments shared by every head: lr/wd multipliers and initialiser."""
    init = hyper.values.get("fc7_init") or "xavier"
    if init not in ("xavier", "normal"):
        from insightgluon.errors import ConfigError
        raise ConfigError(f"loss {hyper.loss}: fc7_init={init!r} must be 'xavier' or 'normal'")
    return dict(fc7_lr_mult=hyper.get("fc7_lr_mult", 1.0, low=0.0),
                fc7_wd_mult=hyper.get("fc7_wd_mult", 1.0, low=0.0), fc7_init=init)


def scale(hyper: Hyper) -> float:
    """``margin_s`` (default 64), which must be positive."""
    return hyper.get("margin_s", 64.0, low=0.0, low_open=True)


@LOSSES.register("softmax")
def _softmax(num_classes, emb_size, hyper):
    """Loss-type 0: plain FC with bias on the un-normalised embedding."""
    return MarginHead(num_classes, emb_size, normalize=False,
                      use_bias=not hyper.flag("fc7_no_bias"), **head_options(hyper))


@LOSSES.register("cosface")
def _cosface(num_classes, emb_size, hyper):
    """Loss-type 2: s·(cos θ - m)."""
    m = hyper.get("margin_m", 0.5)
    return MarginHead(num_classes, emb_size, s=scale(hyper), margin=partial(cosface_margin, m=m),
                      **head_options(hyper))


@LOSSES.register("arcface")
def _arcface(num_classes, emb_size, hyper):
    """Loss-type 4: s·cos(θ + m), 0 ≤ m < π/2 as the legacy assertion."""
    m = hyper.get("margin_m", 0.5, low=0.0, high=math.pi / 2, high_open=True)
    margin = partial(arcface_margin, m=m, easy_margin=hyper.flag("easy_margin"))
    return MarginHead(num_classes, emb_size, s=scale(hyper), margin=margin, **head_options(hyper))


@LOSSES.register("combined")
def _combined(num_classes, emb_size, hyper):
    """Loss-type 5: s·(cos(m1·θ + m2) - m3) with m1, m2, m3 = margin_a, margin_m, margin_b."""
    m1 = hyper.get("margin_a", 1.0, low=0.0, low_open=True)
    m2 = hyper.get("margin_m", 0.5)
    m3 = hyper.get("margin_b", 0.0)
    margin = None
    if (m1, m2, m3) != (1.0, 0.0, 0.0):
        margin = partial(combined_margin, m1=m1, m2=m2, m3=m3)
    return MarginHead(num_classes, emb_size, s=scale(hyper), margin=margin, **head_options(hyper))
