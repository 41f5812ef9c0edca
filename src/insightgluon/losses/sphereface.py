"""SphereFace (A-Softmax, loss-type 1) in Gluon operators, with the legacy β annealing.

The 2018 code needed luoyetx's ``LSoftmax`` C++ operator; this head computes the
same target logit with stock operators:

    ψ(θ) = (-1)^k · cos(mθ) - 2k   for θ ∈ [kπ/m, (k+1)π/m]
    target = ‖x‖ · (ψ(θ) + β·cos θ) / (1 + β)

with W row-normalised and x not (so the other logits are ‖x‖·cos θ_j). cos(mθ) is
the Chebyshev polynomial T_m(cos θ) (the operator's binomial expansion), and k is
treated as a constant, as the operator's hand-written backward did.
"""
import math

import mxnet as mx

from insightgluon.losses.base import LOSSES
from insightgluon.losses.margin import MarginHead, head_options

#: Above this many classes the legacy script forced beta_freeze=5000 and gamma=0.06.
LARGE_CLASS_COUNT = 20000
LARGE_BETA_FREEZE = 5000
LARGE_GAMMA = 0.06


def sphereface_beta(step, beta=1000.0, beta_min=5.0, beta_freeze=0, gamma=0.12, power=1.0):
    """β at global batch ``step``: ``beta`` until ``beta_freeze``, then
    ``max(beta_min, beta·(1 + gamma·(step - beta_freeze))^(-power))``."""
    if step <= beta_freeze:
        return float(beta)
    return float(max(beta_min, beta * (1.0 + gamma * (step - beta_freeze)) ** (-power)))


def chebyshev(F, c, m):
    """T_m(c) = cos(m·arccos c) by the recurrence T_{n+1} = 2c·T_n - T_{n-1}."""
    prev, cur = F.ones_like(c), c
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * c * cur - prev
    return cur


class SphereFaceHead(MarginHead):
    """A-Softmax head (legacy loss-type 1); ``set_step`` advances the β schedule.

    Parameters
    ----------
    num_classes, emb_size : int
    m : int
        Angular multiplier (legacy ``--margin``, 4).
    beta, beta_min, beta_freeze, gamma, power : float
        The β schedule (see :func:`sphereface_beta`).
    """

    def __init__(self, num_classes, emb_size, m=4, beta=1000.0, beta_min=5.0, beta_freeze=0,
                 gamma=0.12, power=1.0, **fc7):
        super().__init__(num_classes, emb_size, s=1.0, margin=None, normalize=True, **fc7)
        self.m = int(m)
        self.schedule = dict(beta=beta, beta_min=beta_min, beta_freeze=beta_freeze, gamma=gamma,
                             power=power)
        self.beta = sphereface_beta(0, **self.schedule)

    def set_step(self, step):
        self.beta = sphereface_beta(step, **self.schedule)

    def extra_inputs(self, embedding):
        """β as a (1,) array, so a hybridized graph reads the current value."""
        return (mx.nd.full((1,), self.beta, ctx=embedding.context, dtype=embedding.dtype),)

    def forward(self, embedding, label):
        return super().forward(embedding, label, *self.extra_inputs(embedding))

    def margin_logits(self, F, embedding, label, weight, bias, num_classes, beta=None):
        fc = F.FullyConnected(embedding, F.L2Normalization(weight, mode="instance"), no_bias=True,
                              num_hidden=num_classes)
        x_norm = F.sqrt(F.sum(embedding * embedding, axis=1) + 1e-12)
        zy = F.pick(fc, label, axis=1)
        cos_t = F.clip(zy / x_norm, -1.0, 1.0)
        k = F.BlockGrad(F.add_n(*[cos_t <= math.cos(j * math.pi / self.m) for j in range(1, self.m)])
                        if self.m > 1 else F.zeros_like(cos_t))
        psi = (1.0 - 2.0 * (k % 2)) * chebyshev(F, cos_t, self.m) - 2.0 * k
        blended = F.broadcast_div(psi + F.broadcast_mul(cos_t, beta), 1.0 + beta)
        delta = x_norm * blended - zy
        return fc + F.broadcast_mul(F.one_hot(label, depth=num_classes), F.expand_dims(delta, axis=1))

    def plain_logits(self, embedding):
        weight = self.fc7_weight.data(embedding.context)
        return mx.nd.FullyConnected(embedding, mx.nd.L2Normalization(weight, mode="instance"),
                                    no_bias=True, num_hidden=self.num_classes)


@LOSSES.register("sphereface")
def _sphereface(num_classes, emb_size, hyper):
    """Loss-type 1, including the legacy override for more than 20000 classes."""
    beta_freeze = hyper.get("beta_freeze", 0, kind=int, low=0)
    gamma = hyper.get("gamma", 0.12, low=0.0)
    if num_classes > LARGE_CLASS_COUNT:
        beta_freeze, gamma = LARGE_BETA_FREEZE, LARGE_GAMMA
    return SphereFaceHead(
        num_classes, emb_size, m=hyper.get("margin", 4, kind=int, low=1),
        beta=hyper.get("beta", 1000.0, low=0.0), beta_min=hyper.get("beta_min", 5.0, low=0.0),
        beta_freeze=beta_freeze, gamma=gamma, power=hyper.get("power", 1.0, low=0.0),
        **head_options(hyper))
