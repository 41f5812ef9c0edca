"""MobileNet v2 (``m2``, Sandler et al. 2018, https://arxiv.org/abs/1801.04381) for 112x112 faces.

As the legacy ``fmobilenetv2``, whose backbone was built from Gluon blocks: its
parameters carry Gluon's automatic names, numbered per block prefix in creation
order -- the stem ``conv0``/``batchnorm0``, the 17 units
``invertedresidual{i}_conv{k}``/``_batchnorm{k}`` and the last 1x1 convolution
``mobilenetv20_hybridsequential0_conv0`` -- with BatchNorm statistics named
``running_mean``/``running_var`` (eps 1e-5, ``fix_gamma=False``). Every name is
given explicitly here, so it never depends on Gluon's global name counters.

Kept from 2018, unlike the paper: a stride-1 stem (112x112 input, 7x7 last map
because the 96- and 160-wide sequences are the stride-2 ones), ReLU rather than
ReLU6, every unit of a sequence expanding ``t`` times the sequence's *input*
width, and a first stride-1 unit whose width changes adding its input through a
1x1 conv+BN+ReLU (``conv3``) rather than skipping the shortcut. The head is
always ``E``: the 2018 ``train_softmax.py`` called ``fmobilenetv2.get_symbol(emb_size)``
for every ``--network m<N>`` with ``N != 1``, so no ``--version-*`` option reached it.
"""

import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.errors import ConfigError
from insightgluon.networks.base import NETWORKS
from insightgluon.nn import Activation, BatchNorm, Conv, InputNorm, Sequence, make_head


# (expansion t, sequence input width, output width, units, stride of the first unit)
SEQUENCES = ((1, 32, 16, 1, 1), (6, 16, 24, 2, 2), (6, 24, 32, 3, 2), (6, 32, 64, 4, 1),
             (6, 64, 96, 3, 2), (6, 96, 160, 3, 2), (6, 160, 320, 1, 1))
STEM_WIDTH = 32
LAST_WIDTH = 1280
# Gluon's nn.BatchNorm defaults, which the 2018 backbone used.
GLUON_BN_EPS = 1e-5
GLUON_BN_STATS = ("running_mean", "running_var")
# Where Gluon put the last 1x1 convolution: inside MobilenetV2's ``features`` sequence.
LAST_PREFIX = "mobilenetv20_hybridsequential0_"


def _conv_bn(prefix, index, channels, kernel=1, stride=1, groups=1, relu=None, bn_mom=0.9):
    """Gluon-named ``<prefix>conv<index>`` (no bias) -> ``<prefix>batchnorm<index>``
    [-> ``<prefix>relu<relu>``]; padding keeps the size at stride 1."""
    layers = [Conv(f"{prefix}conv{index}", channels, kernel, stride, kernel // 2, groups),
              BatchNorm(f"{prefix}batchnorm{index}", eps=GLUON_BN_EPS, momentum=bn_mom,
                        stats=GLUON_BN_STATS)]
    if relu is not None:
        layers.append(Activation(f"{prefix}relu{relu}", "relu"))
    return Sequence(layers)


class InvertedResidual(HybridBlock):
    """Unit ``invertedresidual<index>``: 1x1 expansion -> 3x3 depthwise (stride) -> 1x1 linear
    projection; at stride 1 the input is added, through ``conv3`` (1x1+BN+ReLU) in the first
    unit of a sequence.

    Input (N, C_in, H, W) -> (N, channels, H/stride, W/stride).
    """

    def __init__(self, index, expanded, channels, stride, first, bn_mom=0.9):
        super().__init__(prefix="")
        self.unit = f"invertedresidual{index}_"
        self.stride = stride
        with self.name_scope():
            self.body = Sequence([
                _conv_bn(self.unit, 0, expanded, relu=0, bn_mom=bn_mom),
                _conv_bn(self.unit, 1, expanded, 3, stride, groups=expanded, relu=1,
                         bn_mom=bn_mom),
                _conv_bn(self.unit, 2, channels, bn_mom=bn_mom)])
            self.shortcut = None
            if stride == 1 and first:
                self.shortcut = _conv_bn(self.unit, 3, channels, relu=2, bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        out = self.body(x)
        if self.stride != 1:
            return out
        if self.shortcut is not None:
            x = self.shortcut(x)
        with mx.name.NameManager():
            return F.elemwise_add(out, x, name=f"{self.unit}elemwise_add0")


class MobileNetV2(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1`` (head ``E``).

    Parameters
    ----------
    emb_size : int
        Width of the embedding.
    bn_mom : float
        BatchNorm momentum (the 2018 graph: 0.9).
    **ignored
        ``version_*`` options, accepted and ignored as in 2018 (a warning names any
        value that asks for something else).
    """

    def __init__(self, emb_size=512, bn_mom=0.9, **ignored):
        super().__init__(prefix="")
        if int(emb_size) <= 0:
            raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([_conv_bn("", 0, STEM_WIDTH, 3, relu=0, bn_mom=bn_mom)])
            index = 0
            for expansion, c_in, c_out, units, stride in SEQUENCES:
                for unit in range(units):
                    self.body.add(InvertedResidual(index, expansion * c_in, c_out,
                                                   stride if unit == 0 else 1, unit == 0, bn_mom))
                    index += 1
            self.body.add(_conv_bn(LAST_PREFIX, 0, LAST_WIDTH, relu=0, bn_mom=bn_mom))
            self.head = make_head("E", int(emb_size), LAST_WIDTH, bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))

    def legacy_multipliers(self):
        """``{name: (lr_mult, wd_mult)}``: 1 and 1 on every backbone parameter.

        Gluon declared both on each variable it made, so the 2018 Module optimiser
        decayed the BatchNorm betas too; the ``E`` head (plain symbols) declared none.
        """
        return {name: (1.0, 1.0) for name in self.body.collect_params().keys()}


@NETWORKS.register("m2")
def m2(**options):
    """MobileNet v2 (``m2``; in 2018 every ``m<N>`` with ``N != 1`` built this graph)."""
    return MobileNetV2(**options)
