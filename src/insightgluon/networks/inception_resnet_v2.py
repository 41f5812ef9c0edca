"""Inception-ResNet-v2 (``i4``; Szegedy et al. 2016, https://arxiv.org/abs/1602.07261) as the
2018 InsightFace ``finception_resnet_v2`` built it for 112x112 faces.

That builder differs from the paper and left its layers unnamed:

* every layer is convolution (with bias) -> BatchNorm (MXNet defaults: ``fix_gamma=True``,
  eps 1e-3, momentum 0.9) -> relu, whatever ``--version-act`` and ``--bn-mom`` say;
* "valid" convolutions from a stride-1 stem (``--version-input 0``: stride 2), so the
  maps are 52x52, 25x25 and 12x12; block17's 1x7 / 7x1 pair pads (1, 2) / (2, 1) and
  its second branch starts with 129 channels; the stem's first max-pool is built but
  unused; the last block8 has scale 1 and no activation;
* parameter and operator names are MXNet's automatic ones (``convolution0_weight``,
  ``batchnorm0_gamma``, ``activation0``, ``concat0``, ``_mulscalar1``, ``_plus0``...),
  numbered per operator kind in creation order. We count them while building, so every
  network gets the same names; :meth:`InceptionResNetV2.convert_legacy_params` reads
  checkpoints whose numbering starts later (made in a process that had built other
  networks first).

The embedding head is the 2018 ``get_fc1`` (``E`` by default); its PReLU (heads ``A``-``D``)
is PReLU whatever ``--version-act`` says, as in 2018.
"""
import re
from collections import Counter

import mxnet as mx
from mxnet.gluon import HybridBlock

from insightgluon.networks.base import NETWORKS, fc1_family_options
from insightgluon.networks.legacy import renumber_counters
from insightgluon.nn import (MXNET_BN_EPS, Activation, BatchNorm, Conv, InputNorm, Pool, Sequence,
                             make_head)

# A convolution is (channels, kernel, stride, pad), kernel and pad ints or (h, w);
# ("max" | "avg", kernel, stride, pad) is a pooling. A branch is a list of them.
STEM = [(32, 3, 1, 0), (32, 3, 1, 0), (64, 3, 1, 1), ("max", 3, 2, 0, "unused"),
        (80, 1, 1, 0), (192, 3, 1, 0), ("max", 3, 2, 0)]
MIXED_5B = [[(96, 1, 1, 0)],
            [(48, 1, 1, 0), (64, 5, 1, 2)],
            [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)],
            [("avg", 3, 1, 1), (64, 1, 1, 0)]]
MIXED_6A = [[(384, 3, 2, 0)],
            [(256, 1, 1, 0), (256, 3, 1, 1), (384, 3, 2, 0)],
            [("max", 3, 2, 0)]]
MIXED_7A = [[(256, 1, 1, 0), (384, 3, 2, 0)],
            [(256, 1, 1, 0), (288, 3, 2, 0)],
            [(256, 1, 1, 0), (288, 3, 1, 1), (320, 3, 2, 0)],
            [("max", 3, 2, 0)]]
# Residual blocks: branches, scale, repeats; their width is that of the mixed block before them.
BLOCK35 = ([[(32, 1, 1, 0)],
            [(32, 1, 1, 0), (32, 3, 1, 1)],
            [(32, 1, 1, 0), (48, 3, 1, 1), (64, 3, 1, 1)]], 0.17, 10)
BLOCK17 = ([[(192, 1, 1, 0)],
            [(129, 1, 1, 0), (160, (1, 7), 1, (1, 2)), (192, (7, 1), 1, (2, 1))]], 0.1, 20)
BLOCK8 = ([[(192, 1, 1, 0)],
           [(192, 1, 1, 0), (224, (1, 3), 1, (0, 1)), (256, (3, 1), 1, (1, 0))]], 0.2, 9)
# Mixed block, its residual blocks, whether one more block8 (scale 1, no relu) ends the stage:
# 52x52 (320 channels), 25x25 (1088) and 12x12 (2080) at a 112x112 input.
STAGES = ((MIXED_5B, BLOCK35, False), (MIXED_6A, BLOCK17, False), (MIXED_7A, BLOCK8, True))
FINAL_CHANNELS = 1536
# Kinds of automatically named parameters in a checkpoint: "convolution12_weight".
AUTO_PARAM = re.compile(r"^(convolution|batchnorm)(\d+)_(.+)$")


class AutoNames:
    """MXNet's automatic operator names (``convolution0``, ``convolution1``, ...), one counter
    per operator kind, handed out in the order the 2018 builder created its operators.

    One instance per network, so names never depend on what the process built before.
    """

    def __init__(self):
        # The input normalisation (:class:`InputNorm`) is ``_minusscalar0`` / ``_mulscalar0``.
        self._next = Counter({"_minusscalar": 1, "_mulscalar": 1})

    def __call__(self, kind):
        index = self._next[kind]
        self._next[kind] += 1
        return f"{kind}{index}"


def conv_factory(names, in_channels, channels, kernel, stride, pad, with_act=True):
    """The 2018 ``ConvFactory``: convolution with bias -> BatchNorm (MXNet defaults) [-> relu].

    Every width is known, so a checkpoint's shapes are checked before any input is seen.
    """
    layers = [Conv(names("convolution"), channels, kernel, stride, pad, use_bias=True,
                   in_channels=in_channels),
              BatchNorm(names("batchnorm"), eps=MXNET_BN_EPS, momentum=0.9, fix_gamma=True,
                        in_channels=channels)]
    if with_act:
        layers.append(Activation(names("activation"), "relu"))
    return Sequence(layers)


def build_layers(names, specs, in_channels):
    """A branch: its convolutions and poolings in order (a pooling marked ``unused`` only
    takes its number, as the 2018 stem's first max-pool did). Returns it and its width."""
    layers = []
    for spec in specs:
        if isinstance(spec[0], str):
            name = names("pooling")
            if spec[-1] != "unused":
                layers.append(Pool(name, spec[1], spec[2], spec[3], spec[0]))
        else:
            layers.append(conv_factory(names, in_channels, *spec))
            in_channels = spec[0]
    return Sequence(layers), in_channels


def _op_names():
    """A name scope without the block prefix, so an operator is named exactly as given."""
    return mx.name.NameManager()


class Mixed(HybridBlock):
    """Parallel branches on one input, concatenated on channels (operator ``concat<n>``)."""

    def __init__(self, names, branches, in_channels):
        super().__init__(prefix="")
        self.channels = 0
        with self.name_scope():
            for i, branch in enumerate(branches):
                layers, width = build_layers(names, branch, in_channels)
                self.register_child(layers, f"branch{i}")
                self.channels += width
        self.op_name = names("concat")

    def hybrid_forward(self, F, x):
        outs = [branch(x) for branch in self._children.values()]
        with _op_names():
            return F.concat(*outs, dim=1, name=self.op_name)


class ScaledResidual(HybridBlock):
    """``x + scale * BN(conv1x1(Mixed(x)))``, then relu unless ``with_act`` is false.

    Input and output (N, channels, H, W).
    """

    def __init__(self, names, branches, channels, scale, with_act=True):
        super().__init__(prefix="")
        self.scale = scale
        with self.name_scope():
            self.mixed = Mixed(names, branches, channels)
            self.up = conv_factory(names, self.mixed.channels, channels, 1, 1, 0, with_act=False)
            self.mul_name, self.plus_name = names("_mulscalar"), names("_plus")
            self.act = Activation(names("activation"), "relu") if with_act else None

    def hybrid_forward(self, F, x):
        with _op_names():
            y = F._internal._mul_scalar(self.up(self.mixed(x)), scalar=self.scale,
                                        name=self.mul_name)
            y = F.elemwise_add(x, y, name=self.plus_name)
        return self.act(y) if self.act is not None else y


def _residuals(names, spec, channels, linear_end):
    branches, scale, repeats = spec
    blocks = [ScaledResidual(names, branches, channels, scale) for _ in range(repeats)]
    if linear_end:  # the 2018 builder's final block8 call: default scale 1.0, no activation
        blocks.append(ScaledResidual(names, branches, channels, 1.0, with_act=False))
    return blocks


class InceptionResNetV2(HybridBlock):
    """Input (N, 3, H, W) raw RGB 0..255 (112x112 for faces) -> (N, emb_size) ``fc1``.

    Parameters
    ----------
    emb_size : int
        Width of the embedding (the 2018 ``num_classes`` argument).
    version_input : int
        0: the first convolution has stride 2; any other value >= 0: stride 1.
    version_output : str, optional
        A 2018 ``get_fc1`` head (a key of :data:`~insightgluon.nn.HEADS`); ``None`` means ``E``.
        ``Z`` returns the flattened last map, (N, 1536 * 12 * 12) on 112x112 faces.

    The other ``get_network`` options (``version_se``, ``version_unit``, ``version_act``,
    ``version_multiplier``, ``bn_mom``) were not read by the 2018 builder and are ignored.
    """

    def __init__(self, emb_size=512, version_input=1, version_output=None, **_unused):
        super().__init__(prefix="")
        head = fc1_family_options(emb_size, version_input, version_output,
                                  "0 (stride-2 stem) or 1 (stride-1 stem)")
        names = AutoNames()
        stem = [(*STEM[0][:2], 2 if version_input == 0 else 1, STEM[0][3])] + STEM[1:]
        with self.name_scope():
            self.norm = InputNorm()
            self.body, width = build_layers(names, stem, 3)
            for branches, residual, linear_end in STAGES:
                mixed = Mixed(names, branches, width)
                self.body.add(mixed)
                width = mixed.channels
                for block in _residuals(names, residual, width, linear_end):
                    self.body.add(block)
            self.body.add(conv_factory(names, width, FINAL_CHANNELS, 1, 1, 0))
            # get_fc1 used PReLU and momentum 0.9 in its heads whatever the flags said
            self.head = make_head(head, int(emb_size), FINAL_CHANNELS, act="prelu", bn_mom=0.9)

    def hybrid_forward(self, F, x):
        return self.head(self.body(self.norm(x)))

    def convert_legacy_params(self, saved):
        """``saved`` with its automatic names renumbered to ours when they are shifted.

        The 2018 counters were process-wide: a checkpoint whose ``batchnorm`` (or
        ``convolution``) numbers are ours plus a constant (the process had built another
        network first) is renamed; anything else is returned unchanged, so that loading
        reports what is missing.
        """
        return renumber_counters(saved, self.collect_params().keys(), AUTO_PARAM)


@NETWORKS.register("i4")
def i4(**options):
    """Inception-ResNet-v2 (``i4``) as built by the 2018 ``finception_resnet_v2``."""
    return InceptionResNetV2(**options)
