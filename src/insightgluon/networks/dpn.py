"""Dual Path Networks (``p68``, ``p92``, ``p107``, ``p131``; Chen et al. 2017,
https://arxiv.org/abs/1707.01629) for 112x112 faces.

Each block has a residual path (widths added) and a densely connected path
(``inc`` channels appended per block), both fed by one grouped bottleneck of
pre-activation BN-act-conv layers. A 3x3 stride-1 stem and stage strides
2, 2, 2, 2 take 112x112 to 7x7.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, common_options, scaled
from insightgluon.nn import BatchNorm, BNActConv, ConvBNAct, InputNorm, Sequence, \
    make_activation, make_head

# depth -> (stem width, k_R, groups G, blocks per stage, dense increment per stage, width factor)
DPN_SPECS = {
    68: (10, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64), 1),
    92: (64, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128), 4),
    107: (128, 200, 50, (4, 8, 20, 3), (20, 64, 64, 128), 4),
    131: (128, 160, 40, (4, 8, 28, 3), (16, 32, 32, 128), 4),
}


class DualPathBlock(HybridBlock):
    """Input/output are one tensor: the residual part (``width`` channels) followed by the
    dense part. ``project`` blocks (first of a stage) re-split the input with a 1x1 conv.
    """

    def __init__(self, name, in_channels, mid, width, inc, groups, stride, project, act, bn_mom):
        super().__init__(prefix="")
        self.unit, self.width, self.inc = name, width, inc
        with self.name_scope():
            self.proj = BNActConv(f"{name}_proj", in_channels, width + 2 * inc, 1, stride,
                                  act=act, bn_mom=bn_mom) if project else None
            self.body = Sequence([
                BNActConv(f"{name}_c1x1_a", in_channels, mid, act=act, bn_mom=bn_mom),
                BNActConv(f"{name}_c3x3_b", mid, mid, 3, stride, 1, groups, act=act,
                          bn_mom=bn_mom),
                BNActConv(f"{name}_c1x1_c", mid, width + inc, act=act, bn_mom=bn_mom)])

    def hybrid_forward(self, F, x):
        source = self.proj(x) if self.proj is not None else x
        y = self.body(x)
        w, n = self.unit, self.width
        with mx.name.NameManager():
            resid = F.elemwise_add(F.slice_axis(source, axis=1, begin=0, end=n, name=f"{w}_sr"),
                                   F.slice_axis(y, axis=1, begin=0, end=n, name=f"{w}_yr"),
                                   name=f"{w}_resid")
            dense = F.concat(F.slice_axis(source, axis=1, begin=n, end=None, name=f"{w}_sd"),
                             F.slice_axis(y, axis=1, begin=n, end=None, name=f"{w}_yd"),
                             dim=1, name=f"{w}_dense")
            return F.concat(resid, dense, dim=1, name=f"{w}_out")


class DPN(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``."""

    def __init__(self, depth, emb_size=512, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, version_act, version_multiplier, "E")
        act, mult = opts["version_act"], opts["version_multiplier"]
        stem, k_r, groups, blocks, incs, factor = DPN_SPECS[depth]
        stem = scaled(stem, mult)
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([ConvBNAct("conv0", "bn0", "relu0", stem, 3, 1, 1, act=act,
                                            bn_mom=bn_mom)])
            channels = stem
            for s, (count, inc) in enumerate(zip(blocks, incs), start=1):
                width = scaled(64 * 2 ** (s - 1) * factor, mult)
                mid = scaled(k_r * 2 ** (s - 1), mult, divisor=groups)
                inc = scaled(inc, mult, divisor=4)
                for j in range(1, count + 1):
                    self.body.add(DualPathBlock(f"stage{s}_unit{j}", channels, mid, width, inc,
                                                groups, 2 if j == 1 else 1, j == 1, act, bn_mom))
                    channels = width + 3 * inc if j == 1 else channels + inc
            self.body.add(BatchNorm("bn_last", momentum=bn_mom))
            self.body.add(make_activation(act, "relu_last", channels))
            self.head = make_head(opts["version_output"], opts["emb_size"], channels, act=act,
                                  bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


def _register(depth):
    @NETWORKS.register(f"p{depth}")
    def build(**options):
        return DPN(depth, **options)
    build.__doc__ = f"DPN-{depth}: {DPN_SPECS[depth]}."
    return build


for _depth in DPN_SPECS:
    _register(_depth)
