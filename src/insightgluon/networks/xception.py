"""fxception: Xception (``x1``; Chollet 2017, https://arxiv.org/abs/1610.02357) for 112x112 faces,
as the 2018 InsightFace graph.

* Stem ``Entry_flow_b1``: two 3x3 conv-BN-relu layers (``conv1`` to half the first width,
  ``conv2`` to the first width); ``conv1`` has stride 2 for ``--version-input 0``, else 1.
* Entry flow ``Entry_flow_b2..b4`` and exit unit ``Exit_flow_b5``: separable convolutions
  then a 3x3 stride-2 max-pool, plus a 1x1 stride-2 conv-BN shortcut ``<unit>_conv1``.
* Middle flow ``Middle_flow_block_0..7``: relu-separable three times plus the identity.
* ``Exit_flow_b6``: separable-relu twice, then the embedding head (``--version-output``).

A separable convolution ``<layer>`` is a 3x3 depthwise convolution with bias, a 1x1
convolution ``<layer>_pointwise_kernel_conv2d`` with bias and BatchNorm ``<layer>_bn``.
The 2018 graph split every channel into its own convolution ``<layer>_depthwise_kernel_<i>``
(weight (1, 1, 3, 3), bias (1,)), 11,556 of them in ``x1`` (a slow graph to bind and to run);
we compute one grouped convolution ``<layer>_depthwise`` (weight (C, 1, 3, 3), bias (C,)) with
the same result, and :meth:`Xception.convert_legacy_params` stacks a 2018 checkpoint's
per-channel arrays. Files in our layout (what ``export`` writes) load as they are.

Widths (stem, b2, b3, b4 and middle, b5, b6 first, b6 last) are the 2018 "smaller" list
64, 64, 128, 364, 512, 768, 1024; ``--version-input 2`` and above take the paper's
64, 128, 256, 728, 1024, 1536, 2048. The body uses plain relu and the head PReLU, whatever
``--version-act`` says; ``--version-se``, ``--version-unit``, ``--version-act`` and
``--version-multiplier`` were not read by the 2018 builder and are ignored. The heads are
those of the 2018 ``get_fc1`` (:data:`~insightgluon.nn.HEADS`).
"""
import re
from typing import Dict, NamedTuple, Optional, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.errors import CheckpointError
from insightgluon.networks.base import NETWORKS, fc1_family_options
from insightgluon.nn import Activation, BatchNorm, Conv, InputNorm, Pool, Sequence, make_head

# --version-input -> widths: 0 and 1 the 2018 "smaller" list, 2 and above the paper's.
SMALL_WIDTHS = (64, 64, 128, 364, 512, 768, 1024)
PAPER_WIDTHS = (64, 128, 256, 728, 1024, 1536, 2048)
MIDDLE_BLOCKS = 8
# get_fc1's activation was PReLU whatever the network used.
HEAD_ACT = "prelu"


class UnitSpec(NamedTuple):
    """One unit: ``layers`` reads left to right, ``S`` a separable conv (output width
    ``widths[i]``, an index into the width list), ``R`` a relu (the k-th is named
    ``<name>_sepconv<k>_relu``); ``shortcut`` is ``conv``, ``identity`` or ``None``."""

    name: str
    layers: str
    widths: Tuple[int, ...]
    shortcut: Optional[str]
    pool: Optional[str]


UNITS = (
    (UnitSpec("Entry_flow_b2", "SRS", (1, 1), "conv", "Entry_flow_b2_pool"),
     UnitSpec("Entry_flow_b3", "RSRS", (2, 2), "conv", "Entry_flow_b3_pool"),
     UnitSpec("Entry_flow_b4", "RSRS", (3, 3), "conv", "Entry_flow_b4_pool"))
    + tuple(UnitSpec(f"Middle_flow_block_{i}", "RSRSRS", (3, 3, 3), "identity", None)
            for i in range(MIDDLE_BLOCKS))
    # The 2018 graph names the exit unit's pool Entry_flow_b5_pool.
    + (UnitSpec("Exit_flow_b5", "RSRS", (3, 4), "conv", "Entry_flow_b5_pool"),
       UnitSpec("Exit_flow_b6", "SRSR", (5, 6), None, None))
)


class SeparableConv(HybridBlock):
    """3x3 depthwise conv (bias) -> 1x1 conv (bias) -> BatchNorm, named after ``name``.

    Parameters ``<name>_depthwise_weight`` (C, 1, 3, 3) and ``_bias`` (C,),
    ``<name>_pointwise_kernel_conv2d_weight`` (channels, C, 1, 1) and ``_bias``,
    ``<name>_bn_*``. Input (N, C, H, W) -> (N, channels, H, W).
    """

    def __init__(self, name, in_channels, channels, bn_mom=0.9):
        super().__init__(prefix="")
        self.layer_name = name
        self.in_channels = in_channels
        with self.name_scope():
            self.depthwise = Conv(f"{name}_depthwise", in_channels, 3, 1, 1, groups=in_channels,
                                  use_bias=True, in_channels=in_channels)
            self.pointwise = Conv(f"{name}_pointwise_kernel_conv2d", channels, use_bias=True,
                                  in_channels=in_channels)
            self.bn = BatchNorm(f"{name}_bn", momentum=bn_mom, in_channels=channels)

    def hybrid_forward(self, F, x):
        return self.bn(self.pointwise(self.depthwise(x)))


class XceptionUnit(HybridBlock):
    """The layers of ``spec`` (then its pool) plus its shortcut. (N, C, H, W) -> (N, C', H', W')."""

    def __init__(self, spec, in_channels, widths, bn_mom=0.9):
        super().__init__(prefix="")
        self.kind = spec.shortcut
        self.add_name = f"{spec.name}_plus"
        channels, relus, seps = in_channels, 0, 0
        with self.name_scope():
            self.body = Sequence()
            for token in spec.layers:
                if token == "R":
                    relus += 1
                    self.body.add(Activation(f"{spec.name}_sepconv{relus}_relu", "relu"))
                else:
                    width = widths[spec.widths[seps]]
                    seps += 1
                    self.body.add(SeparableConv(f"{spec.name}_sepconv{seps}", channels, width, bn_mom))
                    channels = width
            if spec.pool:
                self.body.add(Pool(spec.pool, 3, 2, 1))
            self.shortcut = None
            if spec.shortcut == "conv":
                self.shortcut = Sequence([
                    Conv(f"{spec.name}_conv1_conv2d", channels, 1, 2, use_bias=True,
                         in_channels=in_channels),
                    BatchNorm(f"{spec.name}_conv1_bn", momentum=bn_mom, in_channels=channels)])
        self.out_channels = channels

    def hybrid_forward(self, F, x):
        out = self.body(x)
        if self.kind is None:
            return out
        residual = x if self.shortcut is None else self.shortcut(x)
        with mx.name.NameManager():
            return F.elemwise_add(out, residual, name=self.add_name)


def _stem_layer(name, channels, stride, bn_mom):
    return [Conv(f"{name}_conv2d", channels, 3, stride, 1, use_bias=True),
            BatchNorm(f"{name}_bn", momentum=bn_mom, in_channels=channels),
            Activation(f"{name}_relu", "relu")]


class Xception(HybridBlock):
    """fxception (see module docstring).

    Input (N, 3, 112, 112) raw RGB 0..255 -> (N, emb_size) ``fc1`` (head ``A``/``AX``: the
    last width; ``Z``: the flattened (C, 7, 7) map). Options are described in
    :func:`insightgluon.networks.get_network`.
    """

    def __init__(self, emb_size=512, version_input=1, version_output=None, bn_mom=0.9, **_unused):
        super().__init__(prefix="")
        output = fc1_family_options(emb_size, version_input, version_output,
                                    "0 (stride-2 stem), 1 (stride-1 stem) or 2 and above (stride 1, the paper's widths)")
        widths = PAPER_WIDTHS if version_input >= 2 else SMALL_WIDTHS
        with self.name_scope():
            self.norm = InputNorm()
            self.stem = Sequence(_stem_layer("Entry_flow_b1_conv1", widths[0] // 2,
                                             2 if version_input == 0 else 1, bn_mom)
                                 + _stem_layer("Entry_flow_b1_conv2", widths[0], 1, bn_mom))
            self.body = Sequence()
            channels = widths[0]
            for spec in UNITS:
                unit = XceptionUnit(spec, channels, widths, bn_mom)
                self.body.add(unit)
                channels = unit.out_channels
            self.head = make_head(output, int(emb_size), channels, act=HEAD_ACT, bn_mom=bn_mom)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.stem(self.norm(x))))

    def convert_legacy_params(self, saved: Dict) -> Dict:
        """A 2018 checkpoint's per-channel depthwise kernels stacked into ours (see
        :func:`stack_depthwise_kernels`); a file in our layout is returned unchanged."""
        return stack_depthwise_kernels(saved, separable_channels(self))


def separable_channels(block) -> Dict[str, int]:
    """``{layer name: input channels}`` of every :class:`SeparableConv` inside ``block``."""
    found = {}
    if isinstance(block, SeparableConv):
        found[block.layer_name] = block.in_channels
    for child in block._children.values():
        found.update(separable_channels(child))
    return found


# How the 2018 graph named channel i of a separable layer's depthwise convolution.
_PER_CHANNEL = re.compile(r"^(?P<layer>.+)_depthwise_kernel_(?P<index>0|[1-9][0-9]*)"
                          r"_(?P<kind>weight|bias)$")
# A per-channel array has one output channel of one input channel: (1, 1, k, k) or (1,).
_CHANNEL_SHAPE = {"weight": "(1, 1, k, k)", "bias": "(1,)"}


def stack_depthwise_kernels(saved: Dict, layers: Dict[str, int]) -> Dict:
    """Stack the 2018 per-channel depthwise arrays of ``layers`` into one grouped convolution.

    Parameters
    ----------
    saved : dict
        ``{name: NDArray}`` of a checkpoint. For a layer ``L`` of ``C`` channels the 2018 code
        saved ``L_depthwise_kernel_<i>_weight`` (1, 1, k, k) and ``_bias`` (1,), i = 0 .. C-1.
    layers : dict
        ``{L: C}`` of the network (:func:`separable_channels`).

    Returns
    -------
    dict
        ``saved`` with each such group replaced by ``L_depthwise_weight`` (C, 1, k, k) and
        ``L_depthwise_bias`` (C,), stacked by channel number (not by name order). Names of
        other layers are left for the loader to report; a dict without per-channel arrays is
        returned as is.

    Raises
    ------
    CheckpointError
        A channel is missing, numbered beyond C, of another shape, or the layer is also stored
        stacked; the message names the parameter.
    """
    groups: Dict[str, Dict[Tuple[str, int], str]] = {}
    for name in saved:
        match = _PER_CHANNEL.match(name)
        if match and match["layer"] in layers:
            groups.setdefault(match["layer"], {})[(match["kind"], int(match["index"]))] = name
    if not groups:
        return saved
    grouped = {name for names in groups.values() for name in names.values()}
    out = {name: value for name, value in saved.items() if name not in grouped}
    for layer, names in groups.items():
        for kind in ("weight", "bias"):
            target = f"{layer}_depthwise_{kind}"
            if target in saved:
                raise CheckpointError(f"{target} and the per-channel {layer}_depthwise_kernel_*_{kind} "
                                      "are both in the checkpoint; keep one layout")
            out[target] = _stack(saved, names, layer, kind, layers[layer])
    return out


def _stack(saved, names, layer, kind, channels):
    """The ``kind`` arrays of channels 0 .. channels-1 of ``layer``, concatenated on axis 0."""
    per_channel = f"{layer}_depthwise_kernel_{{}}_{kind}"
    missing = [i for i in range(channels) if (kind, i) not in names]
    if missing:
        raise CheckpointError(f"missing {per_channel.format(missing[0])}"
                              f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}: "
                              f"{layer} has {channels} channels, numbered 0..{channels - 1}")
    beyond = sorted(i for k, i in names if k == kind and i >= channels)
    if beyond:
        raise CheckpointError(f"unexpected {per_channel.format(beyond[0])}: {layer} has {channels} "
                              "channels (was it saved from another --network or options?)")
    arrays = [saved[names[(kind, i)]] for i in range(channels)]
    first = tuple(arrays[0].shape)
    for i, array in enumerate(arrays):
        shape = tuple(array.shape)
        if shape != first or not _is_channel_shape(shape, kind):
            raise CheckpointError(f"{per_channel.format(i)} has shape {shape}; a per-channel depthwise "
                                  f"{kind} is {_CHANNEL_SHAPE[kind]}, the same in every channel")
    return mx.nd.concat(*arrays, dim=0)


def _is_channel_shape(shape, kind):
    if kind == "bias":
        return shape == (1,)
    return len(shape) == 4 and shape[:2] == (1, 1)


@NETWORKS.register("x1")
def x1(**options):
    """Xception (``x1``): 34 separable convolutions, widths up to 1024 (2048 from version_input 2)."""
    return Xception(**options)
