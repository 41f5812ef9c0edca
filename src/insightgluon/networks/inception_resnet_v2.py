"""Inception-ResNet-v2 (``i4``; Szegedy et al. 2016, https://arxiv.org/abs/1602.07261) for
112x112 faces.

The ImageNet layout with "same" padding: stem to 28x28 (two stride-2
max-pools), mixed_5b, 10 x block35 (scale 0.17), reduction to 14x14, 20 x
block17 (0.1), reduction to 7x7, 10 x block8 (0.2, the last without
activation), a 1x1 conv to 1536 and the embedding head.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, common_options, scaled
from insightgluon.nn import ConvBNAct, Conv, InputNorm, Pool, Sequence, make_activation, make_head


class Branches(HybridBlock):
    """Runs parallel branches on one input and concatenates them on channels."""

    def __init__(self, name, branches):
        super().__init__(prefix="")
        self.unit = name
        with self.name_scope():
            for i, branch in enumerate(branches):
                self.register_child(branch, f"branch{i}")

    def hybrid_forward(self, F, x):
        outs = [branch(x) for branch in self._children.values()]
        with mx.name.NameManager():
            return F.concat(*outs, dim=1, name=f"{self.unit}_concat")


class ScaledResidual(HybridBlock):
    """x + scale * conv1x1(branches(x)), then the activation unless ``last``."""

    def __init__(self, name, channels, branches, scale, act, bn_mom, last=False):
        super().__init__(prefix="")
        self.unit, self.scale = name, scale
        with self.name_scope():
            self.branches = Branches(name, branches)
            self.up = Conv(f"{name}_up", channels, use_bias=True)
            self.act = None if last else make_activation(act, f"{name}_relu", channels)

    def hybrid_forward(self, F, x):
        with mx.name.NameManager():
            y = F.elemwise_add(x, F._internal._mul_scalar(self.up(self.branches(x)),
                                                          scalar=self.scale,
                                                          name=f"{self.unit}_scale"),
                               name=f"{self.unit}_plus")
        return self.act(y) if self.act is not None else y


class InceptionResNetV2(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``."""

    def __init__(self, emb_size=512, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, version_act, version_multiplier, "E")
        act, mult = opts["version_act"], opts["version_multiplier"]

        def cba(name, ch, k=1, s=1):
            k = k if isinstance(k, tuple) else (k, k)
            return ConvBNAct(f"{name}_conv", f"{name}_bn", f"{name}_relu", scaled(ch, mult), k, s,
                             (k[0] // 2, k[1] // 2), act=act, bn_mom=bn_mom)

        def chain(name, spec):
            return Sequence([cba(f"{name}_{i}", ch, k, s) for i, (ch, k, s) in enumerate(spec)])

        c = lambda ch: scaled(ch, mult)  # noqa: E731
        with self.name_scope():
            self.norm = InputNorm()
            body = Sequence([cba("conv1a", 32), cba("conv2a", 32, 3), cba("conv2b", 64, 3),
                             Pool("pool3a", 3, 2, 1), cba("conv3b", 80), cba("conv4a", 192, 3),
                             Pool("pool5a", 3, 2, 1)])
            body.add(Branches("mixed_5b", [
                cba("mixed_5b_b0", 96), chain("mixed_5b_b1", [(48, 1, 1), (64, 5, 1)]),
                chain("mixed_5b_b2", [(64, 1, 1), (96, 3, 1), (96, 3, 1)]),
                Sequence([Pool("mixed_5b_pool", 3, 1, 1, "avg"), cba("mixed_5b_b3", 64)])]))
            width = c(96) + c(64) + c(96) + c(64)
            for i in range(10):
                n = f"block35_{i}"
                body.add(ScaledResidual(n, width, [
                    cba(f"{n}_b0", 32), chain(f"{n}_b1", [(32, 1, 1), (32, 3, 1)]),
                    chain(f"{n}_b2", [(32, 1, 1), (48, 3, 1), (64, 3, 1)])], 0.17, act, bn_mom))
            body.add(Branches("mixed_6a", [
                cba("mixed_6a_b0", 384, 3, 2),
                chain("mixed_6a_b1", [(256, 1, 1), (256, 3, 1), (384, 3, 2)]),
                Pool("mixed_6a_pool", 3, 2, 1)]))
            width += c(384) + c(384)
            for i in range(20):
                n = f"block17_{i}"
                body.add(ScaledResidual(n, width, [
                    cba(f"{n}_b0", 192),
                    chain(f"{n}_b1", [(128, 1, 1), (160, (1, 7), 1), (192, (7, 1), 1)])],
                    0.1, act, bn_mom))
            body.add(Branches("mixed_7a", [
                chain("mixed_7a_b0", [(256, 1, 1), (384, 3, 2)]),
                chain("mixed_7a_b1", [(256, 1, 1), (288, 3, 2)]),
                chain("mixed_7a_b2", [(256, 1, 1), (288, 3, 1), (320, 3, 2)]),
                Pool("mixed_7a_pool", 3, 2, 1)]))
            width += c(384) + c(288) + c(320)
            for i in range(10):
                n = f"block8_{i}"
                body.add(ScaledResidual(n, width, [
                    cba(f"{n}_b0", 192),
                    chain(f"{n}_b1", [(192, 1, 1), (224, (1, 3), 1), (256, (3, 1), 1)])],
                    0.2, act, bn_mom, last=i == 9))
            body.add(cba("conv7b", 1536))
            self.body = body
            self.head = make_head(opts["version_output"], opts["emb_size"], c(1536), act=act,
                                  bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


@NETWORKS.register("i4")
def i4(**options):
    """Inception-ResNet-v2 (``i4``)."""
    return InceptionResNetV2(**options)
