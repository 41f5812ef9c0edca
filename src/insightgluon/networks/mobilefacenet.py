"""MobileFaceNet (``y1``, Chen et al. 2018, https://arxiv.org/abs/1804.07573) for 112x112 faces.

Layer names equal the 2018 ``fmobilefacenet`` symbol's (``conv_1_conv2d``,
``res_3_block0_conv_sep_batchnorm``, ``conv_6dw7_7_conv2d``, ``pre_fc1``,
``fc1``...). Its BatchNorms used MXNet's default epsilon (1e-3), the head's
``fc1`` 2e-5.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, common_options, default_head, scaled
from insightgluon.networks.resnet import HEAD_BN_MOM, legacy_head_act
from insightgluon.nn import MXNET_BN_EPS, ConvBNAct, InputNorm, Sequence, make_head

# (name, out channels, expansion channels, stride, residual blocks after it); the
# strided "DResidual" stages, each followed by ``blocks`` residual ones (res_3, res_4, res_5).
STAGES = (
    ("dconv_23", "res_3", 64, 128, 4),
    ("dconv_34", "res_4", 128, 256, 6),
    ("dconv_45", "res_5", 128, 512, 2),
)
RESIDUAL_EXPANSION = {"res_3": 128, "res_4": 256, "res_5": 256}
STEM_WIDTH = 64
LAST_WIDTH = 512


def _conv(name, channels, kernel=1, stride=1, pad=0, groups=1, act="prelu", bn_mom=0.9):
    """The legacy ``Conv`` (conv+BN+act) or, with ``act=None``, ``Linear`` (conv+BN)."""
    return ConvBNAct(f"{name}_conv2d", f"{name}_batchnorm", f"{name}_relu" if act else None,
                     channels, kernel, stride, pad, groups, act=act or "relu",
                     bn_eps=MXNET_BN_EPS, bn_mom=bn_mom)


class DepthwiseBlock(HybridBlock):
    """Inverted bottleneck ``DResidual``: 1x1 expand (+act) -> 3x3 depthwise (+act) -> 1x1 project.

    With ``residual=True`` (stride 1, equal widths) the input is added to the output.
    """

    def __init__(self, name, out_channels, expansion, stride, residual, act, bn_mom):
        super().__init__(prefix="")
        self.unit, self.residual = name, residual
        with self.name_scope():
            self.body = Sequence([
                _conv(f"{name}_conv_sep", expansion, act=act, bn_mom=bn_mom),
                _conv(f"{name}_conv_dw", expansion, 3, stride, 1, groups=expansion, act=act,
                      bn_mom=bn_mom),
                _conv(f"{name}_conv_proj", out_channels, act=None, bn_mom=bn_mom)])

    def hybrid_forward(self, F, x):
        y = self.body(x)
        if not self.residual:
            return y
        with mx.name.NameManager():
            return F.elemwise_add(y, x, name=f"{self.unit}_plus")


class MobileFaceNet(HybridBlock):
    """MobileFaceNet: input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``.

    ``version_output`` defaults to ``GDC`` (the paper's and the 2019 config's head), built
    as the 2018 ``get_fc1`` built it: PReLU and BatchNorm momentum 0.9 whatever ``version_act``
    and ``bn_mom`` say. ``version_multiplier`` scales every width. Options of
    :func:`insightgluon.networks.get_network` that concern ResNets are ignored.
    """

    def __init__(self, emb_size=128, version_output=None, version_act="prelu",
                 version_multiplier=1.0, bn_mom=0.9, **_resnet_options):
        super().__init__(prefix="")
        opts = common_options(emb_size, version_output, version_act, version_multiplier, default_head("y1"))
        act, mult = opts["version_act"], opts["version_multiplier"]
        stem = scaled(STEM_WIDTH, mult)
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence([
                _conv("conv_1", stem, 3, 2, 1, act=act, bn_mom=bn_mom),
                _conv("conv_2_dw", stem, 3, 1, 1, groups=stem, act=act, bn_mom=bn_mom)])
            width = stem
            for down, res, out, expansion, blocks in STAGES:
                out = scaled(out, mult)
                self.body.add(DepthwiseBlock(down, out, scaled(expansion, mult), 2, False,
                                             act, bn_mom))
                for i in range(blocks):
                    self.body.add(DepthwiseBlock(f"{res}_block{i}", out,
                                                 scaled(RESIDUAL_EXPANSION[res], mult), 1, True,
                                                 act, bn_mom))
                width = out
            last = scaled(LAST_WIDTH, mult)
            self.body.add(_conv("conv_6sep", last, act=act, bn_mom=bn_mom))
            self.head = make_head(opts["version_output"], opts["emb_size"], last,
                                  act=legacy_head_act(act), bn_mom=HEAD_BN_MOM)
        self.width = width

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


@NETWORKS.register("y1")
def y1(**options):
    """MobileFaceNet with the GDC head (``y1``)."""
    return MobileFaceNet(**options)
