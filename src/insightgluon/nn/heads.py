"""Embedding heads (legacy ``--version-output``): last feature map -> ``fc1`` embedding.

Each head is data: a list of layer specs built in order, so a new head is one
registry entry. Names are the legacy ones (``bn1``, ``pre_fc1``, ``fc1``,
``conv_6dw7_7_*``...), hence 2018 checkpoints load. Every head but ``D`` ends in
an operator named ``fc1`` (``fc1_output`` is where exporters cut the graph);
``A`` and ``Z`` have no dense layer, so their width is the feature map's, not
``emb_size``.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.nn.blocks import Flatten, GlobalAvgPool, Sequence, make_activation
from insightgluon.nn.layers import LEGACY_BN_EPS, MXNET_BN_EPS, BatchNorm, Conv, Dense, Dropout, LegacyNamed
from insightgluon.registry import Registry

HEADS = Registry("output head (--version-output)")


class Identity(LegacyNamed):
    """Names its input ``name`` (so that ``<name>_output`` exists in an exported graph)."""

    def hybrid_forward(self, F, x):
        with self._raw_names():
            return F.identity(x, name=self.op_name)


def _bn1(ctx):
    return BatchNorm("bn1", momentum=ctx["bn_mom"])


def _fc1_bn(ctx):
    return BatchNorm("fc1", momentum=ctx["bn_mom"], fix_gamma=True)


def _register_sequence(name, *parts, doc=None):
    """Register head ``name`` built from ``parts``: callables ``ctx -> layer``."""

    @HEADS.register(name)
    def build(emb_size, in_channels, act="prelu", bn_mom=0.9):
        ctx = dict(emb_size=emb_size, in_channels=in_channels, act=act, bn_mom=bn_mom)
        return Sequence([part(ctx) for part in parts])

    build.__doc__ = doc or f"The legacy ``{name}`` head."
    return build


def _dropout(p):
    # Every 2018 head has one unnamed dropout, which a fresh 2018 process called dropout0.
    return lambda ctx: Dropout("dropout0", p)


def _dense(name):
    return lambda ctx: Dense(name, ctx["emb_size"])


def _pool_act(ctx):
    return [BatchNorm("bn1", momentum=ctx["bn_mom"]),
            make_activation(ctx["act"], "relu1", ctx["in_channels"]),
            GlobalAvgPool("pool1")]


_register_sequence("E", _bn1, _dropout(0.4), _dense("pre_fc1"), _fc1_bn)
_register_sequence("F", _bn1, _dropout(0.4), _dense("fc1"))
_register_sequence("G", _bn1, _dense("fc1"))
_register_sequence("H", _dense("fc1"))
_register_sequence("I", _bn1, _dense("pre_fc1"), _fc1_bn)
_register_sequence("J", _dense("pre_fc1"), _fc1_bn)
_register_sequence("Z", _bn1, _dropout(0.4), lambda ctx: Flatten("fc1"), doc="""\
    BN ``bn1`` and dropout on the last map, flattened by ``fc1``: (N, C * H * W).

    The 2018 head ended at the dropout, (N, C, H, W) with no ``fc1`` operator (its
    ``fc7`` flattened it); the numbers are the same in the same order.""")
_register_sequence("GAP", lambda ctx: Sequence(_pool_act(ctx)), _dense("pre_fc1"), _fc1_bn)


# The 2018 GDC head was written for MobileFaceNet's 512 channels and kept 512 groups on any
# network: on 1024 to 2048 channels each group sees 2 to 4 of them.
GDC_WIDTH = 512


def _gdc_dw(ctx):
    # Global depthwise conv: one 7x7 filter per group, then BN (the legacy ``Linear``).
    c = ctx["in_channels"]
    c = GDC_WIDTH if c % GDC_WIDTH == 0 else c
    return Sequence([Conv("conv_6dw7_7_conv2d", c, kernel=7, groups=c),
                           BatchNorm("conv_6dw7_7_batchnorm", eps=MXNET_BN_EPS,
                                     momentum=ctx["bn_mom"])])


_register_sequence("GDC", _gdc_dw, _dense("pre_fc1"), _fc1_bn, doc="""\
    Global depthwise conv (MobileFaceNet): 7x7 conv ``conv_6dw7_7_conv2d`` of 512 filters in
    512 groups, BN, dense ``pre_fc1``, BN ``fc1``.

    As in 2018, any input whose channels are a multiple of 512 keeps 512 groups (1024
    channels: two per group), and a map larger than 7x7 is not pooled: the valid 7x7 conv
    leaves (H - 6) x (W - 6) positions, all flattened into ``pre_fc1`` (Inception-ResNet-v2's
    12x12 map: 512 * 36 inputs). Where the 2018 head could not be built we do this instead:
    channels not a multiple of 512 (the DPNs, DenseNet-161/169/201) get one group and one
    filter per channel; a map smaller than 7x7 fails at the first forward with MXNet's shape
    error, as the 2018 graph failed to bind (the networks refuse the stride-2 stems,
    ``version_input=0``, that leave one on 112x112 faces).""")

for _letter in "ABCD":
    for _suffix in ("", "X"):
        _tail = {
            "A": [lambda ctx: Flatten("fc1")],
            "B": [_dense("pre_fc1"), lambda ctx: Identity("fc1")],
            "C": [_dense("pre_fc1"), _fc1_bn],
            "D": [_dense("pre_fc1"), _fc1_bn,
                  lambda ctx: make_activation(ctx["act"], "fc1_relu", ctx["emb_size"],
                                              spatial=False)],
        }[_letter]
        _drop = [lambda ctx: Flatten("flat"), _dropout(0.2)] if _suffix else []
        _register_sequence(_letter + _suffix, lambda ctx: Sequence(_pool_act(ctx)),
                           *_drop, *_tail)


class GNAPHead(HybridBlock):
    """Global norm-aware pooling (MobileFaceNet++): each position is reweighted by
    mean(||x||) / ||x_hw|| before average pooling, then BN -> dense -> BN ``fc1``.

    As in 2018, an ``emb_size`` above 512 first maps the features to ``emb_size`` channels
    (1x1 conv-BN-act ``convx``) and pools them straight into ``fc1``; an ``emb_size`` of 512
    or less on exactly 512 channels has no ``convx`` (and below 512 a BN ``bn6w`` and dense
    ``pre_fc1``). The 2018 head could not take other widths with ``emb_size`` <= 512 (its
    attention map had 512 channels): we map them to 512 channels with ``convx`` first.
    The mean is taken per image; the 2018 code took it over the whole batch,
    which made an embedding depend on the other images of its batch.
    """

    base_width = 512

    def __init__(self, emb_size, in_channels, act="prelu", bn_mom=0.9):
        super().__init__(prefix="")
        self.emb_size = emb_size
        self.width = max(emb_size, self.base_width)
        with self.name_scope():
            self.convx = None
            if emb_size > self.base_width or in_channels != self.base_width:
                self.convx = Sequence([
                    Conv("convx", self.width),
                    BatchNorm("convx_bn", momentum=bn_mom),
                    make_activation(act, "convx_relu", self.width)])
            self.bn6f = BatchNorm("bn6f", momentum=bn_mom, fix_gamma=True)
            self.pool = GlobalAvgPool("pool1")
            if emb_size < self.width:
                self.fc = Sequence([BatchNorm("bn6w", momentum=bn_mom, fix_gamma=True),
                                          Dense("pre_fc1", emb_size)])
            else:
                self.fc = Flatten("flat")
            self.fc1 = BatchNorm("fc1", momentum=bn_mom, fix_gamma=True)

    def hybrid_forward(self, F, x):
        if self.convx is not None:
            x = self.convx(x)
        x = self.bn6f(x)
        with mx.name.NameManager():
            norm = F.sqrt(F.sum(F.square(x, name="gnap_sq"), axis=1, keepdims=True,
                                name="gnap_sum"), name="gnap_norm")
            weight = F.broadcast_div(F.mean(norm, axis=(2, 3), keepdims=True,
                                                   name="gnap_mean"), norm, name="gnap_weight")
            x = F.broadcast_mul(x, weight, name="gnap_mul")
        return self.fc1(self.fc(self.pool(x)))


HEADS.register("GNAP")(GNAPHead)


def make_head(version_output, emb_size, in_channels, act="prelu", bn_mom=0.9):
    """Build the embedding head ``version_output`` (a :data:`HEADS` key) for ``in_channels`` inputs.

    Returns a block mapping (N, in_channels, 7, 7) to (N, emb_size) (``A``/``Z``: see module doc).
    """
    return HEADS.get(version_output)(emb_size, in_channels, act=act, bn_mom=bn_mom)


__all__ = ["HEADS", "make_head", "GNAPHead", "Identity", "LEGACY_BN_EPS"]
