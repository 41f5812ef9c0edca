"""SphereNet (``s20`` ... ``s104``), the SphereFace networks (Liu et al. 2017,
https://arxiv.org/abs/1704.08063), as the legacy ``spherenet`` symbol builds them.

No BatchNorm anywhere: four stages, each a stride-2 3x3 convolution with bias and
PReLU (``conv{s}_1``, ``relu{s}_1``) followed by residual units of two 3x3
convolutions without bias, each with PReLU (``conv{s}_2``, ``relu{s}_2``, ...),
then the dense ``fc1`` straight on the flattened last feature map.

The network was designed for 112x96 faces and also runs on 112x112: the feature map
before ``fc1`` is 512x7x6 or 512x7x7, so ``fc1_weight``'s input width (21504 or
25088) is inferred on the first call, and a checkpoint fixes it when loaded.

Without BatchNorm the training depends on the start: the legacy graph declares its
own initialisation (Normal(0.01) for every convolution weight, 0 for the biases,
0.25 for the PReLU slopes), which overrides the global Xavier initializer, and a
doubled learning rate and no weight decay for the biases (:meth:`SphereNet.legacy_multipliers`).
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import IMAGE_SIZES, NETWORKS, common_options, scaled
from insightgluon.nn import Conv, Dense, InputNorm, Sequence, make_activation

# depth -> residual units per stage (each unit is two convolutions)
SPHERENET_SPECS = {
    20: (1, 2, 4, 1),
    36: (2, 4, 8, 2),
    60: (3, 8, 14, 3),
    64: (3, 8, 16, 3),
    104: (3, 8, 36, 3),
}
FILTERS = (64, 128, 256, 512)
# The initialisation the legacy graph declares on its variables.
WEIGHT_SIGMA = 0.01
BIAS_VALUE = 0.0
# (lr_mult, wd_mult) the legacy graph declares: biases learn twice as fast and are not
# decayed; fc1_weight declares lr_mult 1 (its weight decay stays MXNet's default, 1).
BIAS_MULTIPLIERS = (2.0, 0.0)
FC1_WEIGHT_MULTIPLIERS = (1.0, 1.0)
FC1_NAME = "fc1"
# The face size SphereFace was made for (height, width).
FACE_SIZE = (112, 96)


def _conv_prelu(stage, index, in_channels, channels, stride):
    """``conv{stage}_{index}`` (3x3, pad 1; bias only when strided) -> PReLU ``relu{stage}_{index}``."""
    conv = Conv(f"conv{stage}_{index}", channels, 3, stride, 1, use_bias=stride > 1,
                in_channels=in_channels)
    conv.weight.init = mx.init.Normal(WEIGHT_SIGMA)
    if conv.bias is not None:
        conv.bias.init = mx.init.Constant(BIAS_VALUE)
    return Sequence([conv, make_activation("prelu", f"relu{stage}_{index}", channels)])


class ResidualUnit(HybridBlock):
    """Two 3x3 conv + PReLU layers added to the input: (N, C, H, W) -> (N, C, H, W).

    ``first`` is the index of the unit's first convolution in its stage (2, 4, 6, ...).
    """

    def __init__(self, stage, first, channels):
        super().__init__(prefix="")
        self.op_name = f"conv{stage}_{first + 1}_plus"
        with self.name_scope():
            self.body = Sequence([_conv_prelu(stage, first, channels, channels, 1),
                                  _conv_prelu(stage, first + 1, channels, channels, 1)])

    def hybrid_forward(self, F, x):
        y = self.body(x)
        with mx.name.NameManager():
            return F.elemwise_add(x, y, name=self.op_name)


class SphereNet(HybridBlock):
    """SphereNet: input (N, 3, 112, 96) or (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``.

    The legacy builder read no ``--version-*`` option, so ``version_se``,
    ``version_input``, ``version_output``, ``version_unit``, ``version_act`` and
    ``bn_mom`` are ignored (PReLU is always the fast one; there is no BatchNorm).
    ``version_multiplier`` scales every width (1.0 keeps the legacy shapes).
    """

    def __init__(self, depth, emb_size=512, version_multiplier=1.0, **_unused):
        super().__init__(prefix="")
        opts = common_options(emb_size, None, "prelu", version_multiplier, "H")
        filters = [scaled(f, opts["version_multiplier"]) for f in FILTERS]
        self.stages = len(filters)
        with self.name_scope():
            self.norm = InputNorm()
            self.body = Sequence()
            in_channels = 3
            for stage, (units, channels) in enumerate(zip(SPHERENET_SPECS[depth], filters), start=1):
                self.body.add(_conv_prelu(stage, 1, in_channels, channels, 2))
                for unit in range(units):
                    self.body.add(ResidualUnit(stage, 2 + 2 * unit, channels))
                in_channels = channels
            # Input width left to the first call: it depends on the face size.
            self.fc1 = Dense(FC1_NAME, opts["emb_size"])

    def legacy_multipliers(self):
        """``{name: (lr_mult, wd_mult)}`` the legacy graph declares (the strided convs' biases, fc1)."""
        declared = {f"conv{stage}_1_bias": BIAS_MULTIPLIERS for stage in range(1, self.stages + 1)}
        declared[f"{FC1_NAME}_weight"] = FC1_WEIGHT_MULTIPLIERS
        declared[f"{FC1_NAME}_bias"] = BIAS_MULTIPLIERS
        return declared

    def hybrid_forward(self, F, x):
        return self.fc1(self.body(self.norm(x)))


def _register(depth):
    @NETWORKS.register(f"s{depth}")
    def build(**options):
        return SphereNet(depth, **options)
    IMAGE_SIZES[f"s{depth}"] = FACE_SIZE
    build.__doc__ = f"SphereNet-{depth}: residual units per stage {SPHERENET_SPECS[depth]}."
    return build


for _depth in SPHERENET_SPECS:
    _register(_depth)
