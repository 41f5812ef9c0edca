"""NASNet-A Large (``n1``; Zoph et al. 2018, https://arxiv.org/abs/1707.07012) as the 2018
``fnasnet`` built it for 112x112 faces.

* ``conv0``: 3x3/1 convolution without padding to 96 channels and BN (112 -> 110).
* Two stem cells (110 -> 55 -> 28), then three stages of a first cell and five normal
  cells (1008, 2016 and 4032 channels) with a reduction cell between stages (28 -> 14 -> 7).
* The embedding head ``E`` on the (N, 4032, 7, 7) output.

The 2018 network was a Gluon port of the PyTorch NASNet whose layers were created outside any
name scope, so its parameters carry Gluon's process-wide counters, numbered in the order the
layers were constructed, which is not the order they run. ``train_softmax.py`` built nothing
before the network, so a 2018 checkpoint has the names of a fresh process: ``conv0_weight`` ...
``conv487_weight``, ``batchnorm0_gamma`` ... ``batchnorm263_running_var``. :class:`LegacyCounter`
hands out the same names from counters private to one network, so they never depend on what
else this process built; :meth:`NASNet.convert_legacy_params` renumbers a checkpoint saved by a
process that had built other layers first (e.g. ``conv1``, ``batchnorm245`` onwards).
Kept as the 2018 graph had them:

* ReLU everywhere (no PReLU); every cell BatchNorm has epsilon 1e-3 and momentum 0.1 (the
  PyTorch value: in MXNet it keeps only a tenth of the running statistics at each batch);
* average pools count the zero padding in the mean (Gluon's default; the PyTorch original did
  not); every pool uses the "valid" (floor) output size;
* in the first reduction cell every pool and separable branch sees its input padded top-left
  by one and loses the first row and column of its output (the 2018 ``MaxPoolPad``,
  ``AvgPoolPad`` and ``BranchSeparablesReduction``);
* every cell parameter declares ``lr_mult`` and ``wd_mult`` 1, so the 2018 optimiser decayed the
  BatchNorm betas too (see :meth:`NASNet.legacy_multipliers`).

The 2018 builder took only the embedding size: it read no ``--version-*`` option (the head is
always ``E``), no width multiplier and no ``--bn-mom``; they are ignored here too, but for
``version_multiplier``, which ours reads as an extension: it scales the stem and every cell's width
(to even numbers of channels; the names stay), and 1.0 builds the 2018 graph.
"""
import re

import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.errors import ConfigError
from insightgluon.networks.base import NETWORKS, scaled
from insightgluon.networks.legacy import renumber_counters
from insightgluon.nn import (Activation, BatchNorm, Conv, Dropout, InputNorm, Pool, Sequence,
                             channel_concat, make_head)

STEM_WIDTH = 96
BN_EPS = 1e-3
BN_MOMENTUM = 0.1
BN_STATS = ("running_mean", "running_var")
HEAD = "E"
HEAD_BN_MOMENTUM = 0.9
# The 2018 model also built an ImageNet classifier it never ran; its Gluon dropout took
# ``dropout0``, so the head's unnamed dropout became ``dropout1``.
HEAD_DROPOUT = "dropout1"

# The 2018 cell sequence as (kind, width): each cell's branches run at ``width`` channels.
CELLS = (("stem0", 42), ("stem1", 84),
         ("first", 168), *(("normal", 168),) * 5, ("reduction0", 336),
         ("first", 336), *(("normal", 336),) * 5, ("reduction1", 672),
         ("first", 672), *(("normal", 672),) * 5)
# The 2018 cell classes, lower-cased: with a counter they prefix the cells' operator names.
CELL_SCOPES = {"stem0": "cellstem0", "stem1": "cellstem1", "first": "firstcell",
               "normal": "normalcell", "reduction0": "reductioncell0",
               "reduction1": "reductioncell1"}
# Parameters numbered by a counter, e.g. ``batchnorm263_running_mean``.
COUNTED = re.compile(r"^(conv|batchnorm)(\d+)_(\w+)$")


class LegacyCounter:
    """Gluon's per-prefix name counters as a fresh process starts them, private to one
    network: ``counter("conv")`` returns ``conv0``, then ``conv1``, ..."""

    def __init__(self):
        self._next = {}

    def __call__(self, hint):
        index = self._next.get(hint, 0)
        self._next[hint] = index + 1
        return f"{hint}{index}"


def _gluon_op(layer):
    # A Gluon layer called its operator ``<prefix>fwd``; the parameters keep ``<name>_*``.
    layer.op_name += "_fwd"
    return layer


def _conv(names, channels, kernel=1, stride=1, pad=None, groups=1):
    pad = kernel // 2 if pad is None else pad
    return _gluon_op(Conv(names("conv"), channels, kernel, stride, pad, groups))


def _bn(names):
    return _gluon_op(BatchNorm(names("batchnorm"), eps=BN_EPS, momentum=BN_MOMENTUM,
                               stats=BN_STATS))


def _relu(names):
    return Activation(f"{names('relu')}_fwd", "relu")


def _relu_conv_bn(names, channels):
    """ReLU -> 1x1 convolution -> BN (the 2018 ``conv_1x1`` / ``conv_prev_1x1``)."""
    return Sequence([_relu(names), _conv(names, channels), _bn(names)])


def _separable(names, in_channels, channels, kernel, stride):
    """Depthwise k x k convolution at ``stride``, then 1x1 to ``channels`` (no BN between)."""
    return Sequence([_conv(names, in_channels, kernel, stride, groups=in_channels),
                     _conv(names, channels)])


class LegacyPool(Pool):
    """3x3 or 1x1 max/average pool named ``poolN_fwd``; averages count the zero padding."""

    def __init__(self, names, kernel, stride, pad, pool_type):
        super().__init__(f"{names('pool')}_fwd", kernel, stride, pad, pool_type)
        if pool_type == "avg":
            self._kwargs["count_include_pad"] = True


def _pad(F, x, scope, top_left):
    # One zero row and column on the top-left (or bottom-right) side, as the 2018 F.pad did.
    width = (0, 0, 0, 0, 1, 0, 1, 0) if top_left else (0, 0, 0, 0, 0, 1, 0, 1)
    with mx.name.NameManager():
        return F.pad(x, mode="constant", constant_value=0, pad_width=width, name=f"{scope}_pad0")


def _crop(F, x, scope):
    # Drops the first row and column.
    with mx.name.NameManager():
        return F.slice(x, begin=(None, None, 1, 1), end=(None, None, None, None),
                       name=f"{scope}_slice0")


def _add(F, a, b, name):
    with mx.name.NameManager():
        return F.elemwise_add(a, b, name=name)


class ShiftedPool(HybridBlock):
    """3x3/2 pool (padding 1) of the input padded top-left by one, first row and column
    dropped (the 2018 ``MaxPoolPad``/``AvgPoolPad``): (N, C, 28, 28) -> (N, C, 14, 14)."""

    def __init__(self, names, pool_type):
        super().__init__(prefix="")
        self.scope = names(f"{pool_type}poolpad")
        with self.name_scope():
            self.pool = LegacyPool(names, 3, 2, 1, pool_type)

    def hybrid_forward(self, F, x):
        return _crop(F, self.pool(_pad(F, x, self.scope, top_left=True)), self.scope)


class SeparableBranch(HybridBlock):
    """ReLU -> separable conv (k x k at ``stride``, 1x1 to ``channels``) -> BN -> ReLU ->
    separable conv (k x k, 1x1) -> BN (the 2018 ``BranchSeparables``/``...Stem``).

    ``shifted`` (the 2018 ``BranchSeparablesReduction``): the first separable conv sees the
    input padded top-left by one and its output loses the first row and column.
    Input (N, in_channels, H, W) -> (N, channels, H / stride, W / stride).
    """

    def __init__(self, names, in_channels, channels, kernel, stride, shifted=False):
        super().__init__(prefix="")
        self.scope = names("branchseparablesreduction") if shifted else None
        with self.name_scope():
            self.relu = _relu(names)
            self.sep1 = _separable(names, in_channels, channels, kernel, stride)
            self.rest = Sequence([_bn(names), _relu(names),
                                  _separable(names, channels, channels, kernel, 1), _bn(names)])

    def hybrid_forward(self, F, x):
        x = self.relu(x)
        if self.scope is None:
            return self.rest(self.sep1(x))
        return self.rest(_crop(F, self.sep1(_pad(F, x, self.scope, top_left=True)), self.scope))


class FactorizedReduce(HybridBlock):
    """ReLU, two 1x1/2 average-pool + 1x1-conv paths (the second on the input shifted up-left
    by one) concatenated, BN: (N, C, H, W) -> (N, channels, ceil(H/2), ceil(W/2)).

    It halves the previous input of the cells that follow a resolution change (the 2018
    ``path_1``/``path_2``/``final_path_bn``); its operators carry the cell's ``scope``.
    """

    def __init__(self, names, scope, channels):
        super().__init__(prefix="")
        self.scope, self.half = scope, channels // 2
        with self.name_scope():
            self.relu = _relu(names)
            self.path1 = Sequence([LegacyPool(names, 1, 2, 0, "avg"), _conv(names, channels // 2)])
            self.path2 = Sequence([LegacyPool(names, 1, 2, 0, "avg"), _conv(names, channels // 2)])
            self.bn = _bn(names)

    def hybrid_forward(self, F, x):
        x = self.relu(x)
        shifted = _crop(F, _pad(F, x, self.scope, top_left=False), self.scope)
        return self.bn(channel_concat(F, [self.path1(x), self.path2(shifted)], [self.half] * 2,
                                      f"{self.scope}_concat0"))


class ReductionCell(HybridBlock):
    """Stride-2 cell of A (the current input, projected) and B (the previous input)::

        c0 = sep5x5/2(A) + sep7x7/2(B)   c1 = max3x3/2(A) + sep7x7/2(B)
        c2 = avg3x3/2(A) + sep5x5/2(B)   c3 = avg3x3(c0) + c1   c4 = sep3x3(c0) + max3x3/2(A)
        output concat(c1, c2, c3, c4): 4 x width channels

    ``kind``: ``stem0`` (B is the input itself, 96 channels), ``stem1`` (B reduced by
    :class:`FactorizedReduce`), ``reduction0`` (shifted pools and branches), ``reduction1``.
    The reduction cells pass on their own previous input, not their input, as the next "previous".
    """

    def __init__(self, names, kind, width, stem_width=STEM_WIDTH):
        super().__init__(prefix="")
        self.scope = names(CELL_SCOPES[kind])
        self.keeps_prev = kind.startswith("reduction")
        self.out_name = f"{self.scope}_concat{1 if kind == 'stem1' else 0}"
        self.width = width
        shifted = kind == "reduction0"
        b_channels = stem_width if kind == "stem0" else width

        def sep(in_channels, kernel, stride):
            return SeparableBranch(names, in_channels, width, kernel, stride, shifted)

        def pool(pool_type):
            if shifted:
                return ShiftedPool(names, pool_type)
            return LegacyPool(names, 3, 2, 1, pool_type)

        with self.name_scope():
            # Built in the 2018 order, which fixes the numbers: reduction cells project B first.
            self.prep_b = _relu_conv_bn(names, width) if self.keeps_prev else None
            self.prep_a = _relu_conv_bn(names, width)
            if kind == "stem1":
                self.prep_b = FactorizedReduce(names, self.scope, width)
            self.c0_left = sep(width, 5, 2)
            self.c0_right = sep(b_channels, 7, 2)
            self.c1_left = pool("max")
            self.c1_right = sep(b_channels, 7, 2)
            self.c2_left = pool("avg")
            self.c2_right = sep(b_channels, 5, 2)
            self.c3_right = LegacyPool(names, 3, 1, 1, "avg")
            self.c4_left = sep(width, 3, 1)
            self.c4_right = pool("max")

    def hybrid_forward(self, F, x, prev):
        a = self.prep_a(x)
        b = prev if self.prep_b is None else self.prep_b(prev)
        s = self.scope
        c0 = _add(F, self.c0_left(a), self.c0_right(b), f"{s}__plus0")
        c1 = _add(F, self.c1_left(a), self.c1_right(b), f"{s}__plus1")
        c2 = _add(F, self.c2_left(a), self.c2_right(b), f"{s}__plus2")
        c3 = _add(F, self.c3_right(c0), c1, f"{s}__plus3")
        c4 = _add(F, self.c4_left(c0), self.c4_right(a), f"{s}__plus4")
        return channel_concat(F, [c1, c2, c3, c4], [self.width] * 4, self.out_name)


class NormalCell(HybridBlock):
    """Stride-1 cell of R (the current input, projected) and L (the previous input)::

        c0 = sep5x5(R) + sep3x3(L)   c1 = sep5x5(L) + sep3x3(L)   c2 = avg3x3(R) + L
        c3 = avg3x3(L) + avg3x3(L)   c4 = sep3x3(R) + R
        output concat(L, c0, c1, c2, c3, c4): 6 x width channels

    ``kind`` ``first``: the previous input has twice the resolution and is reduced by
    :class:`FactorizedReduce`; ``normal``: it is projected by a 1x1 convolution.
    """

    def __init__(self, names, kind, width):
        super().__init__(prefix="")
        self.scope = names(CELL_SCOPES[kind])
        self.keeps_prev = False
        first = kind == "first"
        self.out_name = f"{self.scope}_concat{1 if first else 0}"
        self.width = width
        with self.name_scope():
            # Built in the 2018 order: a first cell projects R before reducing L, a normal cell
            # projects L first.
            self.prep_l = None if first else _relu_conv_bn(names, width)
            self.prep_r = _relu_conv_bn(names, width)
            if first:
                self.prep_l = FactorizedReduce(names, self.scope, width)
            self.c0_left = SeparableBranch(names, width, width, 5, 1)
            self.c0_right = SeparableBranch(names, width, width, 3, 1)
            self.c1_left = SeparableBranch(names, width, width, 5, 1)
            self.c1_right = SeparableBranch(names, width, width, 3, 1)
            self.c2_left = LegacyPool(names, 3, 1, 1, "avg")
            self.c3_left = LegacyPool(names, 3, 1, 1, "avg")
            self.c3_right = LegacyPool(names, 3, 1, 1, "avg")
            self.c4_left = SeparableBranch(names, width, width, 3, 1)

    def hybrid_forward(self, F, x, prev):
        r = self.prep_r(x)
        left = self.prep_l(prev)
        s = self.scope
        c0 = _add(F, self.c0_left(r), self.c0_right(left), f"{s}__plus0")
        c1 = _add(F, self.c1_left(left), self.c1_right(left), f"{s}__plus1")
        c2 = _add(F, self.c2_left(r), left, f"{s}__plus2")
        c3 = _add(F, self.c3_left(left), self.c3_right(left), f"{s}__plus3")
        c4 = _add(F, self.c4_left(r), r, f"{s}__plus4")
        return channel_concat(F, [left, c0, c1, c2, c3, c4], [self.width] * 6, self.out_name)


class NASNet(HybridBlock):
    """NASNet-A Large (see the module doc).

    Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1``. Of the
    :func:`insightgluon.networks.get_network` options ``emb_size`` changes the graph, and
    ``version_multiplier`` the widths (not a 2018 option).
    """

    def __init__(self, emb_size=512, version_multiplier=1.0, **_ignored):
        super().__init__(prefix="")
        if int(emb_size) <= 0:
            raise ConfigError(f"emb_size={emb_size!r} must be a positive integer")
        if not float(version_multiplier) > 0:
            raise ConfigError(f"version_multiplier={version_multiplier!r} must be > 0")
        mult = float(version_multiplier)
        names = LegacyCounter()
        stem_width = scaled(STEM_WIDTH, mult, 2)
        with self.name_scope():
            self.norm = InputNorm()
            self.conv0 = Sequence([_conv(names, stem_width, 3, pad=0), _bn(names)])
            self.cells = []
            for index, (kind, width) in enumerate(CELLS):
                if kind.startswith(("stem", "reduction")):
                    cell = ReductionCell(names, kind, scaled(width, mult, 2), stem_width)
                else:
                    cell = NormalCell(names, kind, scaled(width, mult, 2))
                self.register_child(cell, f"cell{index}")
                self.cells.append(cell)
            self.head = make_head(HEAD, int(emb_size), 6 * scaled(CELLS[-1][1], mult, 2),
                                  bn_mom=HEAD_BN_MOMENTUM)
            for layer in self.head._children.values():
                if isinstance(layer, Dropout):
                    layer.op_name = HEAD_DROPOUT

    def hybrid_forward(self, F, x):
        x = self.conv0(self.norm(x))
        prev = x
        for cell in self.cells:
            x, prev = cell(x, prev), (prev if cell.keeps_prev else x)
        return self.head(x)

    def legacy_multipliers(self):
        """``{name: (1.0, 1.0)}`` for every parameter but the head's: the 2018 graph declares
        ``__lr_mult__`` and ``__wd_mult__`` 1 on each Gluon-built variable."""
        head = set(self.head.collect_params().keys())
        return {name: (1.0, 1.0) for name in self.collect_params().keys() if name not in head}

    def convert_legacy_params(self, saved):
        """Renumber a checkpoint whose ``conv``/``batchnorm`` counters started elsewhere.

        The 2018 numbers came from process-wide counters: a process that had built other
        layers before the network numbered them from a later start (e.g. ``conv1``,
        ``batchnorm245``, ...). When the checkpoint's numbers of a prefix are ours shifted by
        a constant, they are shifted back; anything else is returned unchanged, and loading
        names what does not match.
        """
        return renumber_counters(saved, self.collect_params().keys(), COUNTED)


@NETWORKS.register("n1")
def n1(**options):
    """NASNet-A Large (``n1``); ``emb_size`` and (not a 2018 option) ``version_multiplier`` are read."""
    return NASNet(**options)
