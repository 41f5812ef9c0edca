"""Composite blocks shared by the networks: activation by name, conv+BN+act, SE, input scaling."""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.nn.layers import LEGACY_BN_EPS, Activation, BatchNorm, Conv, LegacyNamed
from insightgluon.nn.prelu import NativePReLU, PReLU
from insightgluon.registry import Registry

# Pixel normalisation of every legacy network: (x - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125

ACTIVATIONS = Registry("activation")


@ACTIVATIONS.register("prelu")
def _prelu(name, channels, spatial=True):
    return PReLU(name, channels, spatial=spatial)


@ACTIVATIONS.register("prelu_native")
def _prelu_native(name, channels, spatial=True):
    return NativePReLU(name, channels, spatial=spatial)


def _plain(act_type):
    def build(name, channels, spatial=True):
        return Activation(name, act_type)
    return build


for _act in ("relu", "sigmoid", "tanh", "softrelu", "softsign"):
    ACTIVATIONS.register(_act)(_plain(_act))


def make_activation(act, name, channels, spatial=True):
    """The activation ``act`` as a block named ``name``.

    Parameters
    ----------
    act : str
        ``prelu`` (fast PReLU, the default of every network), ``prelu_native``
        (MXNet's LeakyReLU operator), ``relu``, ``sigmoid``, ``tanh``,
        ``softrelu`` or ``softsign`` -- the legacy ``--version-act`` values.
    name : str
        Legacy layer name (a PReLU's slope is ``<name>_gamma``).
    channels : int
        Channels of the input (needed by PReLU).
    spatial : bool
        Whether the input is (N, C, H, W) rather than (N, C).
    """
    return ACTIVATIONS.get(act)(name, channels, spatial=spatial)


# MXNet 1.9's oneDNN concat cannot hand a piece its gradient when the gradient arrives in a
# channel-blocked layout (16 channels per block with AVX-512) and the piece's channel count is not
# a multiple of the block ("could not construct a sub-memory" in backward).
ONEDNN_CHANNEL_ALIGN = 16


def channel_concat(F, parts, widths, name):
    """Concatenate (N, C_i, H, W) ``parts`` on channels, the operator named ``name``.

    ``widths`` are the C_i. When one is not a multiple of :data:`ONEDNN_CHANNEL_ALIGN`, the
    parts are concatenated as (N, C_i, H*W) arrays instead, which oneDNN keeps in a plain layout
    and so can split the gradient of (NASNet's 168-channel cell outputs and the 20- and 24-channel
    increments of DPN-107/92 would not train otherwise, hybridized or not). Same output either way.
    """
    with mx.name.NameManager():
        if all(int(w) % ONEDNN_CHANNEL_ALIGN == 0 for w in widths):
            return F.concat(*parts, dim=1, name=name)
        flat = [F.reshape(p, shape=(0, 0, -1), name=f"{name}_flat{i}") for i, p in enumerate(parts)]
        out = F.concat(*flat, dim=1, name=f"{name}_flat")
        # named as the concat would be, so ``<name>_output`` is the (N, C, H, W) result either way
        return F.reshape_like(out, parts[0], lhs_begin=2, lhs_end=None, rhs_begin=2, rhs_end=None,
                              name=name)


class Sequence(HybridBlock):
    """Applies its layers in order, adding no name of its own (the layers carry the legacy names)."""

    def __init__(self, layers=()):
        super().__init__(prefix="")
        self._count = 0
        for layer in layers:
            self.add(layer)

    def add(self, layer):
        """Append ``layer`` (a block built with its own legacy name)."""
        self.register_child(layer, f"layer{self._count}")
        self._count += 1
        return self

    def __len__(self):
        return self._count

    def hybrid_forward(self, F, x):
        for layer in self._children.values():
            x = layer(x)
        return x


class ConvBNAct(HybridBlock):
    """Convolution (no bias) -> BatchNorm -> optional activation, each with its own legacy name.

    Input (N, C_in, H, W) -> (N, channels, H', W').
    """

    def __init__(self, conv_name, bn_name, act_name, channels, kernel=1, stride=1, pad=0,
                 groups=1, act="prelu", bn_eps=LEGACY_BN_EPS, bn_mom=0.9, fix_gamma=False):
        super().__init__(prefix="")
        with self.name_scope():
            self.conv = Conv(conv_name, channels, kernel, stride, pad, groups)
            self.bn = BatchNorm(bn_name, eps=bn_eps, momentum=bn_mom, fix_gamma=fix_gamma)
            self.act = make_activation(act, act_name, channels) if act_name else None

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class BNActConv(HybridBlock):
    """Pre-activation BatchNorm -> activation -> convolution (``<name>_bn``, ``_relu``, ``_conv``).

    Input (N, in_channels, H, W) -> (N, channels, H', W').
    """

    def __init__(self, name, in_channels, channels, kernel=1, stride=1, pad=0, groups=1,
                 act="prelu", bn_mom=0.9):
        super().__init__(prefix="")
        with self.name_scope():
            self.bn = BatchNorm(f"{name}_bn", momentum=bn_mom)
            self.act = make_activation(act, f"{name}_relu", in_channels)
            self.conv = Conv(f"{name}_conv", channels, kernel, stride, pad, groups)

    def hybrid_forward(self, F, x):
        return self.conv(self.act(self.bn(x)))


class Pool(LegacyNamed):
    """Max or average pooling with a fixed window, operator named ``name``."""

    def __init__(self, name, kernel, stride, pad=0, pool_type="max"):
        super().__init__(name)
        self._kwargs = dict(kernel=(kernel, kernel), stride=(stride, stride), pad=(pad, pad),
                            pool_type=pool_type, pooling_convention="valid")

    def hybrid_forward(self, F, x):
        with self._raw_names():
            return F.Pooling(x, name=self.op_name, **self._kwargs)


class SqueezeExcite(HybridBlock):
    """Squeeze-and-excitation (``--version-se 1``): global pool -> 1x1 conv to C/16 -> act ->
    1x1 conv to C -> sigmoid -> channel-wise product with the input.

    Names follow the legacy unit: ``<unit>_se_conv1``, ``<unit>_se_relu1``, ``<unit>_se_conv2``.
    """

    def __init__(self, unit, channels, act="prelu", reduction=16):
        super().__init__(prefix="")
        self.unit = unit
        with self.name_scope():
            self.conv1 = Conv(f"{unit}_se_conv1", max(channels // reduction, 1), use_bias=True)
            self.act = make_activation(act, f"{unit}_se_relu1", max(channels // reduction, 1))
            self.conv2 = Conv(f"{unit}_se_conv2", channels, use_bias=True)

    def hybrid_forward(self, F, x):
        with mx.name.NameManager():
            w = F.Pooling(x, global_pool=True, kernel=(7, 7), pool_type="avg",
                          name=f"{self.unit}_se_pool1")
        w = self.conv2(self.act(self.conv1(w)))
        with mx.name.NameManager():
            w = F.Activation(w, act_type="sigmoid", name=f"{self.unit}_se_sigmoid")
            return F.broadcast_mul(x, w, name=f"{self.unit}_se_mul")


class InputNorm(HybridBlock):
    """``(x - 127.5) * scale``: raw RGB 0..255 in, about [-1, 1] out.

    ``scale`` is 1/128 in the 2018 graphs and 1/127.5 in arcface_torch's (which
    normalises ``(x / 255 - 0.5) / 0.5``). The operators keep the legacy names
    ``_minusscalar0`` and ``_mulscalar0``, by which ONNX consumers (the ``insightface``
    package) recognise a graph that normalises its own input.
    """

    def __init__(self, scale=PIXEL_SCALE):
        super().__init__(prefix="")
        self.scale = scale

    def hybrid_forward(self, F, x):
        with mx.name.NameManager():
            return (x - PIXEL_MEAN) * self.scale


class GlobalAvgPool(LegacyNamed):
    """Global average pooling (N, C, H, W) -> (N, C, 1, 1), operator named ``name``."""

    def hybrid_forward(self, F, x):
        with self._raw_names():
            return F.Pooling(x, global_pool=True, kernel=(7, 7), pool_type="avg",
                             name=self.op_name)


class Flatten(LegacyNamed):
    """(N, ...) -> (N, prod(...)), operator named ``name``."""

    def hybrid_forward(self, F, x):
        with self._raw_names():
            return F.Flatten(x, name=self.op_name)
