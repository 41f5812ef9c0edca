"""PReLU with a per-channel slope ``<name>_gamma`` of shape (C,), as the legacy symbols.

MXNet's ``LeakyReLU(act_type='prelu')`` has no MKLDNN kernel and dominates the
training time of every face network here (forward + backward of a
(32, 128, 56, 56) tensor: ~380 ms against ~43 ms for ReLU). :class:`PReLU`
computes the same function from operators that MKLDNN does accelerate::

    prelu(x) = relu(x) + gamma * min(x, 0)

with the per-channel product as a 1x1 depthwise convolution whose weight is
``gamma`` viewed as (C, 1, 1, 1). The forward pass is bit-identical (each
output is either ``x`` or one product ``gamma_c * x``); the input gradient is
bit-identical too, including at ``x == 0`` where ``relu`` passes 0 and
``min(x, 0)`` passes 1, giving ``gamma * g`` exactly as ``LeakyReLU``. The
slope gradient is the same per-channel sum ``sum(g * min(x, 0))``, reduced by
the convolution's weight-gradient kernel (so it differs from ``LeakyReLU``'s
only by float summation order). ``bench/networks.py`` measures the gain.

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

    def _weight(self, F, gamma):
        # A fresh (C, 1, 1, 1) array each call: MKLDNN reorders convolution weights
        # in place when not training, which would corrupt ``gamma`` if the weight
        # were a reshaped view of it. Multiplying by 1 is exact.
        return F.reshape(F._internal._mul_scalar(gamma, scalar=1.0, name=f"{self.op_name}_w"),
                         shape=(-1, 1, 1, 1), name=f"{self.op_name}_w4d")

    def hybrid_forward(self, F, x, gamma):
        with self._raw_names():
            negative = F._internal._minimum_scalar(x, scalar=0.0, name=f"{self.op_name}_neg")
            if not self.spatial:
                scaled = F.broadcast_mul(negative, gamma.reshape((1, -1)),
                                         name=f"{self.op_name}_scale")
                return F.elemwise_add(F.relu(x, name=f"{self.op_name}_pos"), scaled,
                                      name=self.op_name)
            scaled = F.Convolution(negative, self._weight(F, gamma), kernel=(1, 1),
                                   num_filter=self.channels, num_group=self.channels,
                                   no_bias=True, name=f"{self.op_name}_scale")
            return F.elemwise_add(F.relu(x, name=f"{self.op_name}_pos"), scaled,
                                  name=self.op_name)


class NativePReLU(LegacyNamed):
    """PReLU through MXNet's ``LeakyReLU(act_type='prelu')`` operator (the legacy graph)."""

    def __init__(self, name, channels=0, spatial=True):
        super().__init__(name)
        self.channels = channels
        self.gamma = self.params.get("gamma", shape=(channels,), init=mx.init.Constant(INIT_SLOPE),
                                     allow_deferred_init=True)

    def hybrid_forward(self, F, x, gamma):
        with self._raw_names():
            return F.LeakyReLU(x, gamma=gamma, act_type="prelu", name=self.op_name)
