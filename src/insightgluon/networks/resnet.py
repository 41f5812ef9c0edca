"""fresnet (LResNetxxE-IR, "ArcFace" ResNets) for 112x112 faces.

Depths are data (:data:`RESNET_SPECS`); ``r100`` is [3, 13, 30, 3] basic units,
not ResNet-101. Layer names equal the 2018 symbol's (``conv0``, ``bn0``,
``relu0``, ``stage1_unit1_bn1``, ..., ``pre_fc1``, ``fc1``).
"""
from functools import partial

import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, check_choice, common_options, scaled
from insightgluon.nn import (BatchNorm, Conv, ConvBNAct, InputNorm, Pool, Sequence, SqueezeExcite,
                             make_activation, make_head)

# depth -> (unit kind, units per stage)
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    49: ("basic", (3, 4, 14, 3)),
    50: ("basic", (3, 4, 14, 3)),
    74: ("basic", (3, 6, 24, 3)),
    90: ("basic", (3, 8, 30, 3)),
    100: ("basic", (3, 13, 30, 3)),
    124: ("basic", (3, 13, 40, 5)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
    269: ("bottleneck", (3, 30, 48, 8)),
}
# stem width, then the width of each stage's output
FILTERS = {"basic": (64, 64, 128, 256, 512), "bottleneck": (64, 256, 512, 1024, 2048)}


# The 2018 get_fc1 built every head with PReLU (its Act ignored the act_type asked for) and a
# fixed BatchNorm momentum, whatever --version-act and --bn-mom said.
HEAD_BN_MOM = 0.9


def legacy_head_act(act: str) -> str:
    """The activation of a 2018 head: PReLU (``act`` itself when it is one of our PReLUs)."""
    return act if act.startswith("prelu") else "prelu"


def _body_convs(kind, channels, stride, strided=-1):
    """(out_channels, kernel, stride, pad) of a unit's convolutions; ``strided`` indexes the one
    that carries the stride (the last by default)."""
    if kind == "basic":
        convs = [(channels, 3, 1, 1), (channels, 3, 1, 1)]
    else:
        quarter = max(channels // 4, 1)
        convs = [(quarter, 1, 1, 0), (quarter, 3, 1, 1), (channels, 1, 1, 0)]
    out, kernel, _, pad = convs[strided]
    convs[strided] = (out, kernel, stride, pad)
    return convs


def _strided_conv(kind, version, version_input):
    """Which convolution of a unit the 2018 code strided: the first 3x3 of a pre-activation unit
    (v2), the first convolution of a post-activation unit on the 7x7 stem (v1 with
    ``version_input=0``), else the last one."""
    if version == 2:
        return 0 if kind == "basic" else 1
    if version == 1 and version_input == 0:
        return 0
    return -1


class ResidualUnit(HybridBlock):
    """One residual unit ``stage{i}_unit{j}``.

    ``version`` 3 (IR, default): BN-conv-BN-act-conv-BN (+ shortcut), no act after the add.
    ``version`` 1: conv-BN-act-conv-BN, add, act ``_relu3``.
    ``version`` 2 (pre-activation): BN-act-conv-BN-act-conv, shortcut ``_sc`` from the first act.
    ``strided`` indexes the body convolution that carries the stride (see :func:`_strided_conv`).
    Input (N, C_in, H, W) -> (N, channels, H/stride, W/stride).
    """

    def __init__(self, name, kind, in_channels, channels, stride, version=3, act="prelu",
                 bn_mom=0.9, use_se=False, strided=-1):
        super().__init__(prefix="")
        self.unit, self.version = name, version
        bn = partial(BatchNorm, momentum=bn_mom)
        convs = _body_convs(kind, channels, stride, strided)
        with self.name_scope():
            self.pre = Sequence()
            self.body = Sequence()
            self.post = None
            if version == 3:
                self.body.add(bn(f"{name}_bn1"))
            if version == 2:
                self.pre.add(bn(f"{name}_bn1"))
                self.pre.add(make_activation(act, f"{name}_relu1", in_channels))
            for i, (out, k, s, p) in enumerate(convs, start=1):
                last = i == len(convs)
                self.body.add(Conv(f"{name}_conv{i}", out, k, s, p))
                if version == 2:
                    if not last:
                        self.body.add(bn(f"{name}_bn{i + 1}"))
                        self.body.add(make_activation(act, f"{name}_relu{i + 1}", out))
                    continue
                self.body.add(bn(f"{name}_bn{i + (1 if version == 3 else 0)}"))
                if not last:
                    self.body.add(make_activation(act, f"{name}_relu{i}", out))
            self.se = SqueezeExcite(name, channels, act) if use_se else None
            self.shortcut = None
            if stride != 1 or in_channels != channels:
                self.shortcut = Sequence([Conv(f"{name}_conv1sc" if version != 2 else
                                               f"{name}_sc", channels, 1, stride)])
                if version != 2:
                    self.shortcut.add(bn(f"{name}_sc"))
            if version == 1:
                self.post = make_activation(act, f"{name}_relu3", channels)

    def hybrid_forward(self, F, x):
        pre = self.pre(x) if len(self.pre) else x
        y = self.body(pre)
        if self.se is not None:
            y = self.se(y)
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        with mx.name.NameManager():
            y = F.elemwise_add(y, shortcut, name=f"{self.unit}_plus")
        return self.post(y) if self.post is not None else y


class FaceResNet(HybridBlock):
    """LResNet-E-IR and its legacy variants: normalise -> stem -> 4 stages -> embedding head.

    Input (N, 3, 112, 112) raw RGB 0..255 -> output (N, emb_size) (``fc1``).
    Parameters are described in :func:`insightgluon.networks.get_network`.
    """

    def __init__(self, depth, emb_size=512, version_se=0, version_input=1, version_output=None,
                 version_unit=3, version_act="prelu", version_multiplier=1.0, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        kind, units = RESNET_SPECS[depth]
        opts = common_options(emb_size, version_output, version_act, version_multiplier, "E")
        check_choice(version_input, STEMS, "version_input")
        check_choice(version_unit, (1, 2, 3), "version_unit")
        check_choice(version_se, (0, 1), "version_se")
        act = opts["version_act"]
        filters = [scaled(f, opts["version_multiplier"]) for f in FILTERS[kind]]
        strided = _strided_conv(kind, version_unit, version_input)
        with self.name_scope():
            # the stem with bn_data takes the raw pixels: that BatchNorm is the normalisation
            self.norm = None if version_input in RAW_INPUT_STEMS else InputNorm()
            self.stem = STEMS[version_input](filters[0], act, bn_mom)
            self.stages = Sequence()
            in_ch = filters[0]
            for i, count in enumerate(units, start=1):
                for j in range(1, count + 1):
                    self.stages.add(ResidualUnit(
                        f"stage{i}_unit{j}", kind, in_ch, filters[i], 2 if j == 1 else 1,
                        version=version_unit, act=act, bn_mom=bn_mom, use_se=bool(version_se),
                        strided=strided))
                    in_ch = filters[i]
            self.head = make_head(opts["version_output"], opts["emb_size"], in_ch,
                                  act=legacy_head_act(act), bn_mom=HEAD_BN_MOM)

    def hybrid_forward(self, F, x):
        if self.norm is not None:
            x = self.norm(x)
        return self.head(self.stages(self.stem(x)))


def _stem(kernel, stride, bn_data=False):
    def build(channels, act, bn_mom):
        layers = [BatchNorm("bn_data", momentum=bn_mom, fix_gamma=True)] if bn_data else []
        layers += [Conv("conv0", channels, kernel, stride, kernel // 2),
                   BatchNorm("bn0", momentum=bn_mom),
                   make_activation(act, "relu0", channels)]
        return Sequence(layers)
    return build


# --version-input: 0 = 7x7 stride 2 (no max-pool, as in November 2018), 1 = 3x3 stride 1
# (the "L" of LResNet), 2 = a fixed-gamma BN on the raw input (no -127.5, *1/128) before the 3x3 conv.
STEMS = {0: _stem(7, 2), 1: _stem(3, 1), 2: _stem(3, 1, bn_data=True)}
RAW_INPUT_STEMS = (2,)


# The 2018 get_head caps its 3x3 stem at this width.
HEAD_STEM_MAX_WIDTH = 64


def legacy_head_stem(version_input: int, width: int, bn_mom: float = 0.9):
    """The 2018 ``symbol_utils.get_head``, the stem of the DPN and DenseNet graphs.

    ``version_input`` 0: ``conv0`` 7x7/2 to ``width``, BN, PReLU ``relu0``, 3x3/2 max-pool ``pool0``
    (112 -> 28). Any other value: ``conv0`` 3x3/1 to ``min(width, 64)``, BN, PReLU, then the IR unit
    ``head`` of stride 2 (112 -> 56). Returns ``(block, output width)``.
    """
    if version_input == 0:
        return Sequence([ConvBNAct("conv0", "bn0", "relu0", width, 7, 2, 3, act="prelu", bn_mom=bn_mom),
                         Pool("pool0", 3, 2, 1)]), width
    width = min(width, HEAD_STEM_MAX_WIDTH)
    return Sequence([ConvBNAct("conv0", "bn0", "relu0", width, 3, 1, 1, act="prelu", bn_mom=bn_mom),
                     ResidualUnit("head", "basic", width, width, 2, version=3, act="prelu",
                                  bn_mom=bn_mom)]), width


def _register(depth):
    @NETWORKS.register(f"r{depth}")
    def build(**options):
        return FaceResNet(depth, **options)
    build.__doc__ = f"fresnet depth {depth}: {RESNET_SPECS[depth][0]} units {RESNET_SPECS[depth][1]}."
    return build


for _depth in RESNET_SPECS:
    _register(_depth)
