"""AM-Softmax variants from the OpenVINO face-recognition toolkit: focal AM and SV-Softmax."""
from functools import partial

from insightgluon.losses.base import LOSSES, softmax_cross_entropy
from insightgluon.losses.margin import MarginHead, cosface_margin, head_options, scale


class AMFocalHead(MarginHead):
    """AM-Softmax logits with a focal loss (Lin et al. 2017): ``(1 - p)^γ · CE``, ``p = exp(-CE)``.

    γ = 0 is AM-Softmax (CosFace). ``1 - p`` is floored at 1e-30 so the gradient
    stays finite for γ < 1 when a sample is fitted to float32 precision.
    """

    def __init__(self, num_classes, emb_size, focal_gamma=2.0, **kw):
        super().__init__(num_classes, emb_size, **kw)
        self.focal_gamma = float(focal_gamma)

    def loss_from_logits(self, F, logits, label, embedding):
        ce = softmax_cross_entropy(F, logits, label)
        if self.focal_gamma == 0.0:
            return ce
        miss = F.maximum(1.0 - F.exp(-ce), 1e-30)
        return (miss ** self.focal_gamma) * ce


class SVSoftmaxHead(MarginHead):
    """SV-Softmax (Wang et al. 2018, arXiv:1812.11317) on AM-Softmax.

    A non-target class whose ``cos θ_j`` exceeds the penalised target ``cos θ_y - m``
    (a mis-classified "support vector") gets ``t·cos θ_j + t - 1`` instead of
    ``cos θ_j``; t = 1 is AM-Softmax.
    """

    def __init__(self, num_classes, emb_size, t=1.2, **kw):
        super().__init__(num_classes, emb_size, **kw)
        self.t = float(t)

    def penalise(self, F, cos, label, num_classes):
        penalised = super().penalise(F, cos, label, num_classes)
        phi = F.pick(penalised, label, axis=1)
        hard = F.broadcast_greater(cos, F.expand_dims(phi, axis=1))
        support = F.BlockGrad(hard * (1.0 - F.one_hot(label, depth=num_classes)))
        return F.where(support, self.t * cos + (self.t - 1.0), penalised)


@LOSSES.register("am-focal")
def _am_focal(num_classes, emb_size, hyper):
    return AMFocalHead(num_classes, emb_size, focal_gamma=hyper.get("focal_gamma", 2.0, low=0.0),
                       s=scale(hyper), margin=partial(cosface_margin, m=hyper.get("margin_m", 0.5)),
                       **head_options(hyper))


@LOSSES.register("sv-softmax")
def _sv_softmax(num_classes, emb_size, hyper):
    return SVSoftmaxHead(num_classes, emb_size, t=hyper.get("sv_t", 1.2, low=1.0), s=scale(hyper),
                         margin=partial(cosface_margin, m=hyper.get("margin_m", 0.5)),
                         **head_options(hyper))
