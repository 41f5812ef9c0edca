"""Angular-margin variants beyond the legacy set: Li-ArcFace and MagFace."""
import math
from functools import partial

from insightgluon.errors import ConfigError
from insightgluon.losses.base import LOSSES, softmax_cross_entropy
from insightgluon.losses.margin import MarginHead, arcface_margin, cosface_margin, head_options, safe_arccos, scale


class LiArcFaceHead(MarginHead):
    """Li-ArcFace (AirFace, Li et al. 2019, arXiv:1907.12256): logits linear in the angle.

    Every logit is ``s·(π - 2θ_j)/π``; the target uses ``θ + m``, i.e. its value
    drops by ``s·2m/π``. Monotonic over the whole [0, π] range, so no fallback.
    """

    def cosine(self, F, embedding, weight, num_classes):
        cos = super().cosine(F, embedding, weight, num_classes)
        return (math.pi - 2.0 * safe_arccos(F, cos)) / math.pi


class MagFaceHead(MarginHead):
    """MagFace (Meng et al., CVPR 2021, arXiv:2103.06627): margin grows with the feature norm.

    With ``a = clip(‖x‖, l_a, u_a)`` the target is ArcFace's ``cos(θ + m(a))``,
    ``m(a) = l_m + (u_m - l_m)·(a - l_a)/(u_a - l_a)``, and the loss adds
    ``λ_g·g(a)``, ``g(a) = a/u_a² + 1/a``. The fallback threshold is computed
    per sample, ``cos(π - m(a))`` with ``cos θ - m(a)·sin m(a)`` below it; a
    threshold from a fixed margin would apply ``cos(θ + m(a))`` past θ + m(a) = π,
    where it increases with θ.
    """

    def __init__(self, num_classes, emb_size, s=64.0, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8,
                 lambda_g=35.0, easy_margin=False, **fc7):
        super().__init__(num_classes, emb_size, s=s, margin=None, normalize=True, **fc7)
        self.l_a, self.u_a, self.l_m, self.u_m = float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)
        self.easy_margin = bool(easy_margin)

    def _clipped_norm(self, F, embedding):
        return F.clip(F.sqrt(F.sum(embedding * embedding, axis=1) + 1e-12), self.l_a, self.u_a)

    def margin_logits(self, F, embedding, label, weight, bias, num_classes, *extra):
        a = self._clipped_norm(F, embedding)
        m = self.l_m + (self.u_m - self.l_m) * (a - self.l_a) / (self.u_a - self.l_a)
        cos = self.cosine(F, embedding, weight, num_classes)
        cos_t = F.pick(cos, label, axis=1)
        delta = arcface_margin(F, cos_t, m, self.easy_margin) - cos_t
        one_hot = F.one_hot(label, depth=num_classes)
        return (cos + F.broadcast_mul(one_hot, F.expand_dims(delta, axis=1))) * self.s

    def loss_from_logits(self, F, logits, label, embedding):
        a = self._clipped_norm(F, embedding)
        g = a / (self.u_a * self.u_a) + 1.0 / a
        return softmax_cross_entropy(F, logits, label) + self.lambda_g * g


@LOSSES.register("li-arcface")
def _li_arcface(num_classes, emb_size, hyper):
    m = hyper.get("margin_m", 0.5, low=0.0, high=math.pi / 2, high_open=True)
    return LiArcFaceHead(num_classes, emb_size, s=scale(hyper),
                         margin=partial(cosface_margin, m=2.0 * m / math.pi), **head_options(hyper))


@LOSSES.register("magface")
def _magface(num_classes, emb_size, hyper):
    l_a = hyper.get("magface_la", 10.0, low=0.0, low_open=True)
    u_a = hyper.get("magface_ua", 110.0, low=0.0, low_open=True)
    l_m = hyper.get("magface_lm", 0.45, low=0.0)
    u_m = hyper.get("magface_um", 0.8, low=0.0, high=math.pi / 2, high_open=True)
    if not (l_a < u_a and l_m <= u_m):
        raise ConfigError(f"loss magface: need magface_la < magface_ua and magface_lm <= magface_um, "
                          f"got {l_a}, {u_a}, {l_m}, {u_m}")
    return MagFaceHead(num_classes, emb_size, s=scale(hyper), l_a=l_a, u_a=u_a, l_m=l_m, u_m=u_m,
                       lambda_g=hyper.get("magface_lambda", 35.0, low=0.0),
                       easy_margin=hyper.flag("easy_margin"), **head_options(hyper))
