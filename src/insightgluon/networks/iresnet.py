"""arcface_torch's ``IResNet`` (``iresnet18`` ... ``iresnet200``) for 112x112 faces.

The graph of arcface_torch ``backbones/iresnet.py``: a 3x3 stem (conv, BN, PReLU), four stages
of ``IBasicBlock`` (BN, 3x3 conv, BN, PReLU, 3x3 conv carrying the stride, BN, plus the shortcut,
a strided 1x1 conv and BN where the shape changes), then BN, flatten, dropout, a dense layer to
``num_features`` and a BatchNorm whose scale is fixed at 1 (``features``). Every BatchNorm uses
epsilon 1e-5. Parameter names are the PyTorch state dict's with ``.`` as ``_`` (``conv1_weight``,
``layer1_0_bn1_gamma``, ``features_moving_var``...), so :mod:`insightgluon.convert.torch` maps a
``backbone.pth`` onto them by rule.

arcface_torch normalises ``(x / 255 - 0.5) / 0.5`` outside the network; here it is the first
operation, so the network takes raw RGB 0..255 as every zoo network does. Its ``fp16`` option
runs the trunk in half precision and the dense layer and ``features`` in float32: our
``--dtype bf16|fp16`` does the same (the head stays float32).
"""
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS
from insightgluon.nn import (BatchNorm, Conv, Dense, Dropout, Flatten, InputNorm, PReLU, Sequence, ToFloat32,
                             pin_float32)

# arcface_torch's torch.nn default: every BatchNorm of its backbones.
TORCH_BN_EPS = 1e-5
# (x / 255 - 0.5) / 0.5 == (x - 127.5) / 127.5
TORCH_PIXEL_SCALE = 1 / 127.5
# name -> IBasicBlocks per stage
IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}
STAGE_WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64
# The embedding's node name in every graph (what `--layer` defaults to)
EMBEDDING = "fc1"
# the last stage's map on a 112x112 face
FINAL_MAP = 7


def torch_bn(name: str, momentum: float = 0.9, eps: float = TORCH_BN_EPS, flat: bool = False,
             output: str = None):
    """A BatchNorm named like a PyTorch module path, with PyTorch's epsilon; ``flat``: a
    ``BatchNorm1d`` on (N, C), its output node named ``output`` (``fc1`` for the embedding, the
    layer every tool reads by default).

    PyTorch's ``momentum=0.1`` weighs the new batch; MXNet's ``momentum`` weighs the running
    value, so 0.9 here is the same update.
    """
    return BatchNorm(name, eps=eps, momentum=momentum, flat_input=flat, output_name=output)


def frozen_scale(bn: BatchNorm) -> BatchNorm:
    """``bn`` with its scale used as stored but never trained (PyTorch ``weight.requires_grad = False``)."""
    bn.gamma.grad_req = "null"
    return bn


class IBasicBlock(HybridBlock):
    """``layerS.I``: BN -> conv3x3 -> BN -> PReLU -> conv3x3 (stride) -> BN, plus the shortcut."""

    def __init__(self, name, in_channels, channels, stride, bn_mom):
        super().__init__(prefix="")
        with self.name_scope():
            self.body = Sequence([
                torch_bn(f"{name}_bn1", bn_mom),
                Conv(f"{name}_conv1", channels, 3, 1, 1),
                torch_bn(f"{name}_bn2", bn_mom),
                PReLU(f"{name}_prelu", channels),
                Conv(f"{name}_conv2", channels, 3, stride, 1),
                torch_bn(f"{name}_bn3", bn_mom)])
            self.downsample = None
            if stride != 1 or in_channels != channels:
                self.downsample = Sequence([Conv(f"{name}_downsample_0", channels, 1, stride),
                                            torch_bn(f"{name}_downsample_1", bn_mom)])

    def hybrid_forward(self, F, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.body(x) + shortcut


class IResNet(HybridBlock):
    """arcface_torch ``IResNet``: input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size).

    Parameters
    ----------
    layers : tuple of 4 int
        ``IBasicBlock`` count per stage (:data:`IRESNET_LAYERS`).
    emb_size : int
        ``num_features``, the embedding width.
    dropout : float
        Dropout before the dense layer (arcface_torch's ``dropout``; active in training only).
    bn_mom : float
        BatchNorm momentum (MXNet's convention; 0.9 is PyTorch's default 0.1).
    """

    def __init__(self, layers, emb_size=512, dropout=0.0, bn_mom=0.9, **_legacy_options):
        super().__init__(prefix="")
        from insightgluon.errors import ConfigError

        if int(emb_size) <= 0:
            raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout={dropout!r} must be in [0, 1)")
        with self.name_scope():
            self.norm = InputNorm(scale=TORCH_PIXEL_SCALE)
            self.stem = Sequence([Conv("conv1", STEM_WIDTH, 3, 1, 1), torch_bn("bn1", bn_mom),
                                  PReLU("prelu", STEM_WIDTH)])
            self.stages = Sequence()
            width = STEM_WIDTH
            for stage, (count, channels) in enumerate(zip(layers, STAGE_WIDTHS), start=1):
                for i in range(count):
                    self.stages.add(IBasicBlock(f"layer{stage}_{i}", width, channels, 2 if i == 0 else 1, bn_mom))
                    width = channels
            self.head = Sequence([torch_bn("bn2", bn_mom), Flatten("flatten")])
            if dropout > 0:
                self.head.add(Dropout("dropout", float(dropout)))
            # arcface_torch's autocast region ends here: the head computes in float32.
            self.embedding = Sequence([ToFloat32("fc_float32"), Dense("fc", int(emb_size)),
                                       frozen_scale(torch_bn("features", bn_mom, flat=True, output=EMBEDDING))])
        pin_float32(self.embedding)

    def hybrid_forward(self, F, x):
        return self.embedding(self.head(self.stages(self.stem(self.norm(x)))))


def _register(name):
    @NETWORKS.register(name)
    def build(**options):
        return IResNet(IRESNET_LAYERS[name], **options)
    build.__doc__ = f"arcface_torch {name}: IBasicBlocks {IRESNET_LAYERS[name]}."
    return build


for _name in IRESNET_LAYERS:
    _register(_name)
