"""MobileNet v1 (``m1``, Howard et al. 2017, https://arxiv.org/abs/1704.04861) for 112x112 faces.

As the legacy ``fmobilenet``: base width ``bf = int(32 * version_multiplier)``
(truncated, as 2018), layer widths ``bf``, ``2 bf``, ... ``32 bf``; conv+BN
(``fix_gamma=True``, MXNet's default eps 1e-3)+PReLU layers named ``conv_1`` ...
``conv_14``; ``conv_1`` with stride 1 unless ``version_input=0``, so that the
stride-2 depthwise layers ``conv_3_dw``, ``conv_5_dw``, ``conv_7_dw`` and
``conv_13_dw`` end at 7x7 (4x4 with ``version_input=0``). The head is one of
those of the 2018 ``symbol_utils.get_fc1`` (:data:`~insightgluon.nn.HEADS`, default ``E``).

The 2018 ``train_softmax.py`` passed fmobilenet ``version_input``,
``version_output`` and ``version_multiplier`` only, and its activation was
PReLU whatever ``--version-act`` said: ``version_act`` picks only the PReLU
operator here (``prelu_native``: MXNet's LeakyReLU; anything else: the fast one).
"""
import logging

from mxnet.gluon import HybridBlock

from insightgluon.errors import ConfigError
from insightgluon.networks.base import NETWORKS, check_choice, check_head_stem, common_options
from insightgluon.nn import MXNET_BN_EPS, ConvBNAct, InputNorm, Sequence, make_head

logger = logging.getLogger(__name__)

BASE_WIDTH = 32
# (layer index, output width in units of the base width, stride of its depthwise conv)
LAYERS = ((2, 2, 1), (3, 4, 2), (4, 4, 1), (5, 8, 2), (6, 8, 1), (7, 16, 2), (8, 16, 1),
          (9, 16, 1), (10, 16, 1), (11, 16, 1), (12, 16, 1), (13, 32, 2), (14, 32, 1))


def _layer(name, channels, kernel, stride, pad, groups, act, bn_mom):
    return ConvBNAct(f"{name}_conv2d", f"{name}_batchnorm", f"{name}_relu", channels, kernel,
                     stride, pad, groups, act=act, bn_eps=MXNET_BN_EPS, bn_mom=bn_mom,
                     fix_gamma=True)


def base_width(multiplier):
    """Width of ``conv_1``: ``int(32 * multiplier)``; a multiplier leaving no filter is refused."""
    width = int(BASE_WIDTH * multiplier)
    if width < 1:
        raise ConfigError(f"version_multiplier={multiplier!r} leaves conv_1 without filters "
                          f"(int(32 * multiplier) must be at least 1)")
    return width


class MobileNetV1(HybridBlock):
    """Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``
    (head ``A``: (N, 32 * base width); ``Z``: that width times the 7x7 map, flattened)."""

    def __init__(self, emb_size=512, version_input=1, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, "prelu", version_multiplier, "E")
        check_choice(version_input, (0, 1, 2), "version_input")
        check_head_stem(opts["version_output"], version_input)
        if version_act not in ("prelu", "prelu_native"):
            logger.warning("m1 ignores version_act=%r: the 2018 fmobilenet always used PReLU",
                           version_act)
        act = "prelu_native" if version_act == "prelu_native" else "prelu"
        base = base_width(opts["version_multiplier"])
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([_layer("conv_1", base, 3, 2 if version_input == 0 else 1, 1, 1,
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
