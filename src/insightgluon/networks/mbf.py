"""arcface_torch's MobileFaceNet (``mbf``, ``mbf_large``) for 112x112 faces.

Not the 2018 ``y1`` graph: widths are scaled by ``scale`` (2 for ``mbf``, 4 for ``mbf_large``),
the depthwise convolutions are grouped by fixed counts (128, 256, 512 groups) rather than
per channel, stages repeat ``blocks`` residual units (``(1, 4, 6, 2)`` and ``(2, 8, 12, 4)``), the
head is a 7x7 depthwise ``LinearBlock``, a dense layer without bias and a BatchNorm, and every
BatchNorm uses PyTorch's epsilon 1e-5. Parameter names are the PyTorch state dict's with ``.``
as ``_`` (``layers_0_layers_0_weight``, ``features_layers_2_weight``...).

Its ``fp16`` option runs ``layers`` in half precision and ``conv_sep`` and ``features`` in
float32; our ``--dtype bf16|fp16`` does the same.
"""
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS
from insightgluon.networks.iresnet import EMBEDDING, TORCH_PIXEL_SCALE, torch_bn
from insightgluon.nn import Conv, Dense, Flatten, InputNorm, PReLU, Sequence, ToFloat32, pin_float32

# name -> (residual units per stage, width scale)
MBF_SPECS = {"mbf": ((1, 4, 6, 2), 2), "mbf_large": ((2, 8, 12, 4), 4)}
HEAD_WIDTH = 512
FINAL_MAP = 7


def conv_block(name, channels, kernel=1, stride=1, pad=0, groups=1, act=True, bn_mom=0.9):
    """``ConvBlock`` (conv, BN, PReLU) or, with ``act=False``, ``LinearBlock`` (conv, BN):
    ``<name>_layers_0`` ... ``<name>_layers_2``."""
    layers = [Conv(f"{name}_layers_0", channels, kernel, stride, pad, groups),
              torch_bn(f"{name}_layers_1", bn_mom)]
    if act:
        layers.append(PReLU(f"{name}_layers_2", channels))
    return Sequence(layers)


class DepthWise(HybridBlock):
    """1x1 to ``groups`` channels (+PReLU), grouped 3x3 (+PReLU), 1x1 to ``channels``; plus the
    input when ``residual``."""

    def __init__(self, name, channels, groups, stride, residual, bn_mom):
        super().__init__(prefix="")
        self.residual = residual
        with self.name_scope():
            self.body = Sequence([
                conv_block(f"{name}_layers_0", groups, bn_mom=bn_mom),
                conv_block(f"{name}_layers_1", groups, 3, stride, 1, groups=groups, bn_mom=bn_mom),
                conv_block(f"{name}_layers_2", channels, act=False, bn_mom=bn_mom)])

    def hybrid_forward(self, F, x):
        y = self.body(x)
        return y + x if self.residual else y


def residual(name, channels, count, groups, bn_mom):
    """``Residual``: ``count`` residual ``DepthWise`` units ``<name>_layers_I``."""
    return Sequence([DepthWise(f"{name}_layers_{i}", channels, groups, 1, True, bn_mom) for i in range(count)])


class TorchMobileFaceNet(HybridBlock):
    """arcface_torch ``MobileFaceNet``: input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size).

    ``blocks`` are the residual units of the four stages and ``scale`` the width multiple of 64.
    """

    def __init__(self, blocks, scale, emb_size=512, bn_mom=0.9, **_legacy_options):
        super().__init__(prefix="")
        from insightgluon.errors import ConfigError

        if int(emb_size) <= 0:
            raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
        narrow, wide = 64 * scale, 128 * scale
        with self.name_scope():
            self.norm = InputNorm(scale=TORCH_PIXEL_SCALE)
            self.body = Sequence([conv_block("layers_0", narrow, 3, 2, 1, bn_mom=bn_mom)])
            if blocks[0] == 1:
                self.body.add(conv_block("layers_1", narrow, 3, 1, 1, groups=64, bn_mom=bn_mom))
            else:
                self.body.add(residual("layers_1", narrow, blocks[0], 128, bn_mom))
            self.body.add(DepthWise("layers_2", narrow, 128, 2, False, bn_mom))
            self.body.add(residual("layers_3", narrow, blocks[1], 128, bn_mom))
            self.body.add(DepthWise("layers_4", wide, 256, 2, False, bn_mom))
            self.body.add(residual("layers_5", wide, blocks[2], 256, bn_mom))
            self.body.add(DepthWise("layers_6", wide, 512, 2, False, bn_mom))
            self.body.add(residual("layers_7", wide, blocks[3], 256, bn_mom))
            # arcface_torch's autocast region ends here: conv_sep and the head compute in float32.
            self.head = Sequence([
                ToFloat32("conv_sep_float32"),
                conv_block("conv_sep", HEAD_WIDTH, bn_mom=bn_mom),
                conv_block("features_layers_0", HEAD_WIDTH, FINAL_MAP, groups=HEAD_WIDTH, act=False, bn_mom=bn_mom),
                Flatten("features_layers_1"),
                Dense("features_layers_2", int(emb_size), use_bias=False),
                torch_bn("features_layers_3", bn_mom, flat=True, output=EMBEDDING)])
        pin_float32(self.head)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))


def _register(name):
    @NETWORKS.register(name)
    def build(**options):
        blocks, scale = MBF_SPECS[name]
        return TorchMobileFaceNet(blocks, scale, **options)
    build.__doc__ = f"arcface_torch {name}: residual units {MBF_SPECS[name][0]}, width x{MBF_SPECS[name][1]}."
    return build


for _name in MBF_SPECS:
    _register(_name)
