"""PReLU with a per-channel slope ``<name>_gamma`` of shape (C,), as the legacy symbols.

MXNet's ``LeakyReLU(act_type='prelu')`` has no MKLDNN kernel and dominates the
training time of every face network here (forward + backward of a
(32, 128, 56, 56) tensor: ~380 ms against ~43 ms for ReLU). Any operator
without an MKLDNN kernel is costly twice: its own (often single-threaded)
loop, and the reorders of its input and gradient out of and back into
MKLDNN's blocked layout. :class:`PReLU` therefore computes the same function
from MKLDNN operators only (``Activation``, ``add_n``, ``elemwise_add``, ``Convolution``)::

    negative = x + (-1) * relu(x)            # = min(x, 0), exactly
    prelu(x) = relu(x) + gamma * negative

where each per-channel product is a 1x1 depthwise convolution with a (C, 1, 1, 1)
weight (``-1`` everywhere, and ``gamma``).

* The output is bit-identical to ``LeakyReLU``: each element is either ``x``
  or the single product ``gamma_c * x``.
* The input gradient is bit-identical where ``x <= 0`` (``gamma * g``, also at
  ``x == 0`` as ``LeakyReLU``); where ``x > 0`` it is ``(g - gamma*g) + gamma*g``,
  within one rounding of ``g``.
* The slope gradient is the same per-channel sum ``sum(g * min(x, 0))``, reduced
  by the depthwise convolution's weight-gradient kernel in float32 (as every
  convolution weight gradient is), so it differs from ``LeakyReLU``'s by summation
  order (~1e-4 relative over 10^5 elements per channel).

``bench/networks.py`` measures the gain. (N, C) inputs (after a dense layer)
have no MKLDNN layout to keep and use plain broadcast arithmetic.

``NativePReLU`` keeps the single ``LeakyReLU`` operator (``version_act=
'prelu_native'``); both blocks have the same parameter, so checkpoints move
freely between them.
"""
import mxnet as mx

from insightgluon.nn.layers import LegacyNamed

# The initial slope MXNet's LeakyReLU declares for its ``gamma`` input.
INIT_SLOPE = 0.25


class PReLU(LegacyNamed):
    """Fast PReLU (see module docstring): input (N, C, ...) -> same shape.

    Parameters
    ----------
    name : str
        Legacy layer name; the slope is ``<name>_gamma``.
    channels : int
        C (the depthwise convolution needs it when the graph is built).
    spatial : bool
        True for (N, C, H, W) input; False for (N, C) input (e.g. after a dense
        layer), where the slope is a broadcast product instead.
    """

    def __init__(self, name, channels, spatial=True):
        super().__init__(name)
        if channels <= 0:
            raise ValueError(f"{name}: PReLU needs its channel count, got {channels}")
        self.channels = channels
        self.spatial = spatial
        self.gamma = self.params.get("gamma", shape=(channels,), init=mx.init.Constant(INIT_SLOPE),
                                     allow_deferred_init=True)

    def _depthwise(self, F, x, slope, name):
        """Per-channel product ``slope[c] * x[:, c]`` as a 1x1 depthwise convolution."""
        # The (C, 1, 1, 1) weight is computed each call, never a reshaped view of
        # ``gamma``: MKLDNN reorders convolution weights in place when not training.
        x, slope = self._low(F, x, slope)
        weight = F.reshape(slope, shape=(-1, 1, 1, 1), name=f"{name}_w4d")
        return F.Convolution(x, weight, kernel=(1, 1), num_filter=self.channels, num_group=self.channels,
                             no_bias=True, name=name)

    def hybrid_forward(self, F, x, gamma):
        name = self.op_name
        with self._raw_names():
            if not self.spatial:
                # (N, C) input: plain broadcast arithmetic (no MKLDNN layout to keep), in float32.
                x = self._float32(F, x)
                negative = F._internal._minimum_scalar(x, scalar=0.0, name=f"{name}_neg")
                scaled = F.broadcast_mul(negative, gamma.reshape((1, -1)), name=f"{name}_scale")
                return F.elemwise_add(F.relu(x, name=f"{name}_pos"), scaled, name=name)
            # 1 * gamma is exact and gives the convolution a weight array of its own.
            slope = F._internal._mul_scalar(gamma, scalar=1.0, name=f"{name}_w")
            minus_one = F._internal._minus_scalar(F._internal._mul_scalar(gamma, scalar=0.0, name=f"{name}_w0"),
                                                  scalar=1.0, name=f"{name}_wneg")
            x, = self._low(F, x)
            positive = F.Activation(x, act_type="relu", name=f"{name}_pos")
            # add_n, not elemwise_add: MXNet 1.9's MKLDNN subgraph pass (on by default when a
            # symbolic executor such as Module binds the exported graph) fuses an
            # elemwise_add into the convolution as an in-place sum and computes this one wrong.
            negative = F.add_n(x, self._depthwise(F, positive, minus_one, f"{name}_negpos"), name=f"{name}_neg")
            return F.elemwise_add(positive, self._depthwise(F, negative, slope, f"{name}_scale"), name=name)


class NativePReLU(LegacyNamed):
    """PReLU through MXNet's ``LeakyReLU(act_type='prelu')`` operator (the legacy graph)."""

    def __init__(self, name, channels=0, spatial=True):
        super().__init__(name)
        self.channels = channels
        self.gamma = self.params.get("gamma", shape=(channels,), init=mx.init.Constant(INIT_SLOPE),
                                     allow_deferred_init=True)

    def hybrid_forward(self, F, x, gamma):
        x = self._float32(F, x)  # no bfloat16 LeakyReLU in MXNet 1.9
        with self._raw_names():
            return F.LeakyReLU(x, gamma=gamma, act_type="prelu", name=self.op_name)
