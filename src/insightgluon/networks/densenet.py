"""fdensenet: DenseNet-BC (``d121``, ``d161``, ``d169``, ``d201``; Huang et al. 2017,
https://arxiv.org/abs/1608.06993) for 112x112 faces, as the 2018 InsightFace graph.

* Stem (``--version-input``): 1 and above (default) take a 3x3 stride-1 conv
  ``conv0``/``bn0``/PReLU ``relu0`` to at most 64 channels, then one IR residual
  unit ``head`` of stride 2 (112 -> 56); 0 takes a 7x7 stride-2 conv to 2k
  channels and a 3x3 stride-2 max-pool (112 -> 28).
* Dense stages ``DBstage1..4``: units ``DBstage{s}_unit{i}`` of pre-activation
  BN-relu-1x1 conv (4k)-dropout-BN-relu-3x3 conv (k)-dropout, each appended to
  its input (``DBstage{s}_concat{i}``).
* Transitions ``TBstage1..3``: BN-relu-1x1 conv-dropout-2x2 average pool. Their
  width halves a channel count that starts at 2k, not at the stem's real width
  (64 for ``d161``, whose 2k is 96): we keep that count as the 2018 code did.
* Embedding head (``--version-output``) directly on the last concatenation.

The body activations are plain relu whatever ``--version-act`` says; only the
stem and the head use PReLU. Every dropout has rate 0.2 (the head's ``E``/``F``
0.4): active in training, the identity in inference. ``--version-se``,
``--version-unit``, ``--version-act`` and ``--version-multiplier`` were not
read by the 2018 builder and are ignored.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, fc1_family_options
from insightgluon.networks.resnet import legacy_head_stem
from insightgluon.nn import Activation, BatchNorm, Conv, Dropout, InputNorm, Pool, Sequence, make_head

# depth -> (growth rate k, units per dense stage)
DENSENET_SPECS = {
    121: (32, (6, 12, 24, 16)),
    161: (48, (6, 12, 36, 24)),
    169: (32, (6, 12, 32, 32)),
    201: (32, (6, 12, 48, 32)),
}
# Dropout rate after every body convolution.
BODY_DROPOUT = 0.2
# A dense unit's 1x1 bottleneck is this many times the growth rate.
BOTTLENECK = 4
# The stem and the heads always used PReLU.
HEAD_ACT = "prelu"


def _bn_relu_conv(name, index, channels, kernel, bn_mom):
    """``{name}_bn{i}`` -> relu ``{name}_relu{i}`` -> conv ``{name}_conv{i}`` -> ``{name}_dp{i}``."""
    return [BatchNorm(f"{name}_bn{index}", momentum=bn_mom),
            Activation(f"{name}_relu{index}", "relu"),
            Conv(f"{name}_conv{index}", channels, kernel, 1, kernel // 2),
            Dropout(f"{name}_dp{index}", BODY_DROPOUT)]


class DenseUnit(HybridBlock):
    """Appends ``growth`` channels to its input: (N, C, H, W) -> (N, C + growth, H, W)."""

    def __init__(self, stage, index, growth, bn_mom):
        super().__init__(prefix="")
        name = f"{stage}_unit{index}"
        self.concat_name = f"{stage}_concat{index}"
        with self.name_scope():
            self.body = Sequence(_bn_relu_conv(name, 1, BOTTLENECK * growth, 1, bn_mom)
                                 + _bn_relu_conv(name, 2, growth, 3, bn_mom))

    def hybrid_forward(self, F, x):
        with mx.name.NameManager():
            return F.concat(x, self.body(x), dim=1, name=self.concat_name)


class DenseNet(HybridBlock):
    """fdensenet (see module docstring).

    Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1`` (head ``A``/``AX``: the
    last stage's width; ``Z``: the flattened (C, 7, 7) map). Options are described in
    :func:`insightgluon.networks.get_network`.
    """

    def __init__(self, depth, emb_size=512, version_input=1, version_output=None, bn_mom=0.9,
                 **_unused):
        super().__init__(prefix="")
        output = fc1_family_options(emb_size, version_input, version_output,
                                        "0 (7x7 stem) or 1 and above (3x3 stem with an IR unit)")
        growth, units = DENSENET_SPECS[depth]
        counted = 2 * growth
        with self.name_scope():
            self.norm = InputNorm()
            self.stem, width = legacy_head_stem(version_input, counted, bn_mom)
            self.body = Sequence()
            for s, count in enumerate(units, start=1):
                for i in range(1, count + 1):
                    self.body.add(DenseUnit(f"DBstage{s}", i, growth, bn_mom))
                width, counted = width + count * growth, counted + count * growth
                if s < len(units):
                    width = counted = counted // 2
                    self.body.add(Sequence(_bn_relu_conv(f"TBstage{s}", 1, width, 1, bn_mom)
                                           + [Pool(f"TBstage{s}_pool{s}", 2, 2, pool_type="avg")]))
            self.head = make_head(output, int(emb_size), width, act=HEAD_ACT, bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.stem(self.norm(x))))


def _register(depth):
    @NETWORKS.register(f"d{depth}")
    def build(**options):
        return DenseNet(depth, **options)
    growth, units = DENSENET_SPECS[depth]
    build.__doc__ = f"DenseNet-{depth}: growth rate {growth}, dense units {units}."
    return build


for _depth in DENSENET_SPECS:
    _register(_depth)
