"""MobileNet v1 (``m1``, Howard et al. 2017, https://arxiv.org/abs/1704.04861) for 112x112 faces.

As the legacy ``fmobilenet``: base width ``32 * version_multiplier``, conv+BN
(``fix_gamma=True``)+act layers named ``conv_1`` ... ``conv_14``, ``conv_1``
with stride 1 when ``version_input=1`` so that the stride-2 depthwise layers
``conv_3_dw``, ``conv_5_dw``, ``conv_7_dw`` and ``conv_13_dw`` end at 7x7.
"""
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, check_choice, common_options
from insightgluon.nn import MXNET_BN_EPS, ConvBNAct, InputNorm, Sequence, make_head

# (layer index, output width in units of the base width, stride of its depthwise conv)
LAYERS = ((2, 2, 1), (3, 4, 2), (4, 4, 1), (5, 8, 2), (6, 8, 1), (7, 16, 2), (8, 16, 1),
          (9, 16, 1), (10, 16, 1), (11, 16, 1), (12, 16, 1), (13, 32, 2), (14, 32, 1))


def _layer(name, channels, kernel, stride, pad, groups, act, bn_mom):
    return ConvBNAct(f"{name}_conv2d", f"{name}_batchnorm", f"{name}_relu", channels, kernel,
                     stride, pad, groups, act=act, bn_eps=MXNET_BN_EPS, bn_mom=bn_mom,
                     fix_gamma=True)


class MobileNetV1(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``."""

    def __init__(self, emb_size=512, version_input=1, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, version_act, version_multiplier, "E")
        check_choice(version_input, (0, 1, 2), "version_input")
        act = opts["version_act"]
        base = max(int(32 * opts["version_multiplier"]), 1)
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([_layer("conv_1", base, 3, 1 if version_input == 1 else 2, 1, 1,
                                         act, bn_mom)])
            width = base
            for index, mult, stride in LAYERS:
                self.body.add(_layer(f"conv_{index}_dw", width, 3, stride, 1, width, act, bn_mom))
                width = base * mult
                self.body.add(_layer(f"conv_{index}", width, 1, 1, 0, 1, act, bn_mom))
            self.head = make_head(opts["version_output"], opts["emb_size"], width, act=act,
                                  bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


@NETWORKS.register("m1")
def m1(**options):
    """MobileNet v1 (``m1``); ``version_multiplier`` scales the base width 32."""
    return MobileNetV1(**options)
