"""Dual Path Networks (``p68``, ``p92``, ``p107``, ``p131``; Chen et al. 2017,
https://arxiv.org/abs/1707.01629) as the 2018 ``fdpn`` built them for 112x112 faces.

* Stem (``get_head``, ``--version-input``): 1 (default, any value > 0) is conv0 3x3/1
  with 64 filters, BN, PReLU, then the IR residual unit ``head`` of stride 2 (112 -> 56);
  0 is conv0 7x7/2 with 128 filters, BN, PReLU and a 3x3/2 max-pool (112 -> 28).
* Four stages ``conv2_x`` ... ``conv5_x`` of dual-path units. A unit sees the residual
  and the dense path concatenated; a pre-activation BN-ReLU-conv bottleneck (1x1, grouped
  3x3, 1x1) returns ``width + inc`` channels, the first ``width`` added to the residual
  path, the rest appended to the dense path. The first unit of a stage projects the input
  with a BN-ReLU-conv 1x1 to ``width + 2 inc`` (stride 2 from ``conv3_x`` on).
* Embedding head (``--version-output``) on the concatenation of both paths.

The stem and the heads use PReLU, the dual-path units ReLU; the units' BatchNorms take
MXNet's default epsilon (1e-3), the stem's and the heads' 2e-5. The 2018 builder read
neither ``--version-act``, ``--version-multiplier`` nor ``--bn-mom`` (momentum 0.9
everywhere) and ignored ``--version-se``/``--version-unit``; so do we.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, fc1_family_options
from insightgluon.networks.resnet import legacy_head_stem
from insightgluon.nn import (MXNET_BN_EPS, Activation, BatchNorm, Conv, InputNorm, Sequence, channel_concat,
                             make_head)

# depth -> (k_R: bottleneck width of conv2_x, groups G of the 3x3 convs,
#           units per stage conv2_x..conv5_x, dense increment per stage)
DPN_SPECS = {
    68: (128, 32, (3, 4, 12, 3), (16, 32, 32, 64)),
    92: (96, 32, (3, 4, 20, 3), (16, 32, 24, 128)),
    107: (200, 50, (4, 8, 20, 3), (20, 64, 64, 128)),
    131: (160, 40, (4, 8, 28, 3), (16, 32, 32, 128)),
}
# Residual-path width of conv2_x; it doubles with every stage (the bottleneck too).
BASE_WIDTH = 256
# The stem width fdpn asks get_head for (its 3x3 stem caps it at 64).
STEM_WIDTH = 128
# What the 2018 stem and heads used whatever --version-act and --bn-mom said.
STEM_ACT = "prelu"
BN_MOMENTUM = 0.9


class PreActConv(HybridBlock):
    """BN -> ReLU -> conv named ``<name>__bn__bn``, ``<name>__ac__relu``, ``<name>__conv``."""

    def __init__(self, name, channels, kernel=1, stride=1, groups=1):
        super().__init__(prefix="")
        with self.name_scope():
            self.bn = BatchNorm(f"{name}__bn__bn", eps=MXNET_BN_EPS, momentum=BN_MOMENTUM)
            self.act = Activation(f"{name}__ac__relu", "relu")
            self.conv = Conv(f"{name}__conv", channels, kernel, stride, kernel // 2, groups)

    def hybrid_forward(self, F, x):
        return self.conv(self.act(self.bn(x)))


class DualPathUnit(HybridBlock):
    """Unit ``conv{s}_x__{j}``: (residual, dense) -> (residual + ``width``-slice, dense + ``inc``).

    Called with one tensor (the stem output) for the first unit of ``conv2_x``, else with
    the (residual, dense) pair of the previous unit. Residual: (N, width, H', W'); dense:
    (N, D + inc, H', W'), where ``project`` units start D at ``2 inc``.
    """

    def __init__(self, name, mid, width, inc, groups, stride=1, project=False):
        super().__init__(prefix="")
        self.unit, self.width, self.inc = name, width, inc
        self.proj_name = f"{name}_c1x1-w(s/{stride})"
        with self.name_scope():
            self.proj = PreActConv(self.proj_name, width + 2 * inc, 1, stride) if project else None
            self.body = Sequence([PreActConv(f"{name}_c1x1-a", mid),
                                  PreActConv(f"{name}_c3x3-b", mid, 3, stride, groups),
                                  PreActConv(f"{name}_c1x1-c", width + inc)])

    def hybrid_forward(self, F, resid, dense=None):
        unit, width, inc = self.unit, self.width, self.inc
        # (widths: the increment decides whether oneDNN can split the gradient, see channel_concat)
        data = resid if dense is None else channel_concat(F, [resid, dense], [width, inc],
                                                          f"{unit}_cat-input")
        if self.proj is not None:
            proj = self.proj(data)
            with mx.name.NameManager():
                resid = F.slice_axis(proj, axis=1, begin=0, end=width,
                                     name=f"{self.proj_name}-split1")
                dense = F.slice_axis(proj, axis=1, begin=width, end=width + 2 * inc,
                                     name=f"{self.proj_name}-split2")
        out = self.body(data)
        with mx.name.NameManager():
            new_resid = F.slice_axis(out, axis=1, begin=0, end=width, name=f"{unit}_c1x1-c-split1")
            new_dense = F.slice_axis(out, axis=1, begin=width, end=width + inc,
                                     name=f"{unit}_c1x1-c-split2")
            total = F.add_n(resid, new_resid, name=f"{unit}_sum")
        return total, channel_concat(F, [dense, new_dense], [inc, inc], f"{unit}_cat")


class DPN(HybridBlock):
    """Dual Path Network of ``depth`` 68, 92, 107 or 131 (see the module doc).

    Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1`` (head ``A``/``AX``: the
    pooled (N, C) features; ``Z``: the flattened (N, C * 7 * 7) map). Options are those of
    :func:`insightgluon.networks.get_network`; only ``emb_size``, ``version_input`` and
    ``version_output`` change the graph.
    """

    def __init__(self, depth, emb_size=512, version_input=1, version_output=None, **_ignored):
        super().__init__(prefix="")
        head = fc1_family_options(emb_size, version_input, version_output,
                                      "0 (7x7/2 stem) or 1 (3x3 stem + IR unit)")
        k_r, groups, counts, incs = DPN_SPECS[depth]
        with self.name_scope():
            self.norm = InputNorm()
            self.stem, _ = legacy_head_stem(version_input, STEM_WIDTH, BN_MOMENTUM)
            self.units = []
            for stage, (count, inc) in enumerate(zip(counts, incs), start=2):
                width = BASE_WIDTH * 2 ** (stage - 2)
                mid = k_r * width // BASE_WIDTH
                for j in range(1, count + 1):
                    first = j == 1
                    unit = DualPathUnit(f"conv{stage}_x__{j}", mid, width, inc, groups,
                                        2 if first and stage > 2 else 1, project=first)
                    self.register_child(unit, f"conv{stage}_{j}")
                    self.units.append(unit)
            channels = width + (count + 2) * inc
            self.head = make_head(head, int(emb_size), channels, act=STEM_ACT,
                                  bn_mom=BN_MOMENTUM)

    def hybrid_forward(self, F, x):
        paths = (self.stem(self.norm(x)),)
        for unit in self.units:
            paths = unit(*paths)
        with mx.name.NameManager():
            x = F.concat(*paths, dim=1, name="conv5_x_x_cat-final")
        return self.head(x)


def _register(depth):
    @NETWORKS.register(f"p{depth}")
    def build(**options):
        return DPN(depth, **options)
    k_r, groups, counts, incs = DPN_SPECS[depth]
    build.__doc__ = f"DPN-{depth}: k_R {k_r}, G {groups}, units {counts}, increments {incs}."
    return build


for _depth in DPN_SPECS:
    _register(_depth)
