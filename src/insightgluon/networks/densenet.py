"""DenseNet (``d121``, ``d161``, ``d169``, ``d201``; Huang et al. 2017) for 112x112 faces.

Pre-activation dense layers (BN-act-1x1 conv to 4k, BN-act-3x3 conv to k,
concatenated), transitions halving channels and resolution. A 3x3 stride-1
stem and a stride-2 max-pool bring 112x112 to 56x56, so the three transitions
end at 7x7 before the embedding head.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, common_options, scaled
from insightgluon.nn import BatchNorm, BNActConv, ConvBNAct, InputNorm, Pool, Sequence, \
    make_activation, make_head

# depth -> (initial features, growth rate k, layers per dense block)
DENSENET_SPECS = {
    121: (64, 32, (6, 12, 24, 16)),
    161: (96, 48, (6, 12, 36, 24)),
    169: (64, 32, (6, 12, 32, 32)),
    201: (64, 32, (6, 12, 48, 32)),
}


class DenseLayer(HybridBlock):
    """Adds ``growth`` channels: output = concat(input, BN-act-conv1x1-BN-act-conv3x3(input))."""

    def __init__(self, name, in_channels, growth, act, bn_mom):
        super().__init__(prefix="")
        self.unit = name
        with self.name_scope():
            self.body = Sequence([
                BNActConv(f"{name}_x1", in_channels, 4 * growth, act=act, bn_mom=bn_mom),
                BNActConv(f"{name}_x2", 4 * growth, growth, 3, 1, 1, act=act, bn_mom=bn_mom)])

    def hybrid_forward(self, F, x):
        with mx.name.NameManager():
            return F.concat(x, self.body(x), dim=1, name=f"{self.unit}_concat")


class DenseNet(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``."""

    def __init__(self, depth, emb_size=512, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, version_act, version_multiplier, "E")
        act, mult = opts["version_act"], opts["version_multiplier"]
        init, growth, blocks = DENSENET_SPECS[depth]
        init, growth = scaled(init, mult), scaled(growth, mult)
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([
                ConvBNAct("conv0", "bn0", "relu0", init, 3, 1, 1, act=act, bn_mom=bn_mom),
                Pool("pool0", 3, 2, 1)])
            width = init
            for b, count in enumerate(blocks, start=1):
                for i in range(1, count + 1):
                    self.body.add(DenseLayer(f"block{b}_layer{i}", width, growth, act, bn_mom))
                    width += growth
                if b < len(blocks):
                    self.body.add(BNActConv(f"trans{b}", width, width // 2, act=act, bn_mom=bn_mom))
                    self.body.add(Pool(f"trans{b}_pool", 2, 2, pool_type="avg"))
                    width //= 2
            self.body.add(BatchNorm("bn_last", momentum=bn_mom))
            self.body.add(make_activation(act, "relu_last", width))
            self.head = make_head(opts["version_output"], opts["emb_size"], width, act=act,
                                  bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


def _register(depth):
    @NETWORKS.register(f"d{depth}")
    def build(**options):
        return DenseNet(depth, **options)
    build.__doc__ = f"DenseNet-{depth}: {DENSENET_SPECS[depth]}."
    return build


for _depth in DENSENET_SPECS:
    _register(_depth)
