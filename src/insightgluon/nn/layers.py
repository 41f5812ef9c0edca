"""Primitive layers whose parameter *and* operator names equal the 2018 symbols'.

Gluon's stock layers name their operators ``<prefix>fwd`` and BatchNorm's
statistics ``running_mean``; the legacy graphs call them ``conv0``/``bn0`` and
``moving_mean``. These layers take the legacy name once (``Conv("conv0", ...)``)
and use it for both, so ``collect_params()`` keys are ``conv0_weight``,
``bn0_moving_mean``, ... and an exported graph has ``fc1_output`` like a 2018
checkpoint. Every layer is a ``HybridBlock`` written with ``F.*`` only.

Mixed precision: every layer computes in its ``compute_dtype`` (set on a whole
network by :func:`set_compute_dtype`). Parameters always stay float32 (the
master weights the optimiser updates, and what checkpoints hold); a layer with
weights casts its input and weights to the compute dtype, so convolutions and
dense layers run in bfloat16 (CPU) or float16 (GPU) and their gradients come
back to the float32 weights through the cast. BatchNorm takes low-precision
input with float32 parameters and statistics; operators without a bfloat16
kernel in MXNet 1.9 (``Dropout``, ``LeakyReLU``) run in float32.
"""
import mxnet as mx
from mxnet.gluon import HybridBlock

# MXNet's BatchNorm default, which the legacy MobileFaceNet layers relied on.
MXNET_BN_EPS = 1e-3
# The epsilon the legacy ResNets and every embedding head pass explicitly.
LEGACY_BN_EPS = 2e-5


# Precisions a network can compute in (``--dtype``); parameters stay float32 in every case.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def mx_dtype(name: str):
    """The dtype object MXNet's operators take for ``name`` (NumPy has no bfloat16)."""
    if name == "bfloat16":
        from mxnet.contrib.amp.amp import bfloat16

        return bfloat16
    return name


class LegacyNamed(HybridBlock):
    """Base of a layer whose parameters are ``<name>_<param>`` and whose operator is ``<name>``."""

    compute_dtype = "float32"
    pinned_float32 = False

    def __init__(self, name):
        super().__init__(prefix=f"{name}_")
        self.op_name = name

    def _raw_names(self):
        """A name manager without the block prefix, so an operator is called exactly ``op_name``."""
        return mx.name.NameManager()

    def _low(self, F, *arrays):
        """``arrays`` cast to the compute dtype (unchanged in float32; None stays None)."""
        if self.compute_dtype == "float32":
            return arrays
        dtype = mx_dtype(self.compute_dtype)
        return tuple(None if a is None else F.amp_cast(a, dtype=dtype) for a in arrays)

    def _float32(self, F, x):
        """``x`` in float32, for operators without a low-precision kernel."""
        return x if self.compute_dtype == "float32" else F.amp_cast(x, dtype="float32")


def compute_dtype(block) -> str:
    """The compute dtype of ``block``'s layers (that of the first unpinned one found; float32 if none)."""
    stack = [block]
    while stack:
        current = stack.pop()
        if isinstance(current, LegacyNamed) and not current.pinned_float32:
            return current.compute_dtype
        stack.extend(current._children.values())
    return "float32"


def float32_symbol(block, data_name: str = "data"):
    """``block``'s graph on a float32 input variable, computed in float32 whatever its dtype.

    Checkpoints are written from this graph, so they load anywhere (``mx.mod.Module``,
    the 2018 code, ONNX) no matter the precision a network was trained in.
    """
    dtype = compute_dtype(block)
    set_compute_dtype(block, "float32")
    try:
        return block(mx.sym.var(data_name, dtype="float32"))
    finally:
        set_compute_dtype(block, dtype)


class Float32Output(HybridBlock):
    """``net`` (computing in any dtype) with its output cast to float32; adds no parameter names."""

    def __init__(self, net):
        super().__init__(prefix="")
        with self.name_scope():
            self.net = net

    def hybrid_forward(self, F, x):
        return F.amp_cast(self.net(x), dtype="float32")


def set_compute_dtype(block, dtype: str) -> None:
    """Make every layer of ``block`` compute in ``dtype`` (one of :data:`COMPUTE_DTYPES`).

    Layers under :func:`pin_float32` keep float32. Parameters are untouched (float32). A
    hybridized block must be hybridized again (``block.hybridize(...)``) for the change to
    reach its cached graph.
    """
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {dtype!r}: expected one of {', '.join(COMPUTE_DTYPES)}")
    stack = [block]
    while stack:
        current = stack.pop()
        if isinstance(current, LegacyNamed) and not current.pinned_float32:
            current.compute_dtype = dtype
        stack.extend(current._children.values())


def pin_float32(block) -> None:
    """Keep every layer of ``block`` in float32 whatever :func:`set_compute_dtype` later asks.

    A pinned region must start with :class:`ToFloat32` (left unpinned) so its input arrives in
    float32. The layers of arcface_torch's heads are pinned: its autocast ends before them.
    """
    stack = [block]
    while stack:
        current = stack.pop()
        if isinstance(current, LegacyNamed) and not isinstance(current, ToFloat32):
            current.pinned_float32 = True
        stack.extend(current._children.values())


class Conv(LegacyNamed):
    """2-D convolution ``<name>_weight`` (out, in/groups, k, k) [+ ``<name>_bias``].

    Input (N, C_in, H, W) -> output (N, channels, H', W').
    """

    def __init__(self, name, channels, kernel=1, stride=1, pad=0, groups=1, use_bias=False,
                 in_channels=0):
        super().__init__(name)
        kernel, stride, pad = (_pair(v) for v in (kernel, stride, pad))
        self._kwargs = dict(kernel=kernel, stride=stride, pad=pad, num_filter=channels,
                            num_group=groups, no_bias=not use_bias)
        self.weight = self.params.get("weight", allow_deferred_init=True,
                                      shape=(channels, in_channels // groups if in_channels else 0)
                                      + kernel)
        self.bias = self.params.get("bias", shape=(channels,), init="zeros",
                                    allow_deferred_init=True) if use_bias else None

    def hybrid_forward(self, F, x, weight, bias=None):
        x, weight, bias = self._low(F, x, weight, bias)
        with self._raw_names():
            if bias is None:
                return F.Convolution(x, weight, name=self.op_name, **self._kwargs)
            return F.Convolution(x, weight, bias, name=self.op_name, **self._kwargs)


class BatchNorm(LegacyNamed):
    """BatchNorm over axis 1 with ``gamma``, ``beta``, ``moving_mean``, ``moving_var``.

    ``fix_gamma=True`` (the legacy ``fc1`` layer) keeps ``gamma`` as a parameter,
    so checkpoints still carry it, but the operator uses 1 and it gets no gradient.
    ``stats`` names the statistics: ``("running_mean", "running_var")`` for the 2018
    graphs that were built from Gluon blocks (MobileNetV2, NASNet).

    ``flat_input=True`` (an (N, C) input after a dense layer) computes it as (N, C, 1, 1): MXNet
    1.9's oneDNN BatchNorm crashes on an (N, C) input after an (N, C, 1, 1) one of the same
    epsilon, as arcface_torch's MobileFaceNet head has them (it reuses the cached 4-D primitive).
    ``output_name`` names that layer's (N, C) output node (the embedding's ``fc1``).
    """

    def __init__(self, name, eps=LEGACY_BN_EPS, momentum=0.9, fix_gamma=False, in_channels=0,
                 stats=("moving_mean", "moving_var"), flat_input=False, output_name=None):
        super().__init__(name)
        self._kwargs = dict(eps=eps, momentum=momentum, fix_gamma=fix_gamma)
        self.flat_input = flat_input
        self.output_name = output_name or f"{name}_2d"
        shape = (in_channels,)
        self.gamma = self.params.get("gamma", grad_req="null" if fix_gamma else "write",
                                     shape=shape, init="ones", allow_deferred_init=True)
        self.beta = self.params.get("beta", shape=shape, init="zeros", allow_deferred_init=True)
        self.moving_mean = self.params.get(stats[0], grad_req="null", shape=shape,
                                           init="zeros", allow_deferred_init=True,
                                           differentiable=False)
        self.moving_var = self.params.get(stats[1], grad_req="null", shape=shape,
                                          init="ones", allow_deferred_init=True,
                                          differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, moving_mean, moving_var):
        with self._raw_names():
            if self.flat_input:
                x = F.reshape(x, shape=(0, 0, 1, 1), name=f"{self.op_name}_4d")
            y = F.BatchNorm(x, gamma, beta, moving_mean, moving_var, name=self.op_name, **self._kwargs)
            return F.reshape(y, shape=(0, -1), name=self.output_name) if self.flat_input else y


class Dense(LegacyNamed):
    """FullyConnected ``<name>_weight`` (units, in) and ``<name>_bias``; flattens its input, or with
    ``flatten=False`` applies to the last axis ((N, L, in) -> (N, L, units), a transformer's tokens)."""

    def __init__(self, name, units, use_bias=True, in_units=0, flatten=True):
        super().__init__(name)
        self._kwargs = dict(num_hidden=units, no_bias=not use_bias, flatten=flatten)
        self.weight = self.params.get("weight", shape=(units, in_units), allow_deferred_init=True)
        self.bias = self.params.get("bias", shape=(units,), init="zeros",
                                    allow_deferred_init=True) if use_bias else None

    def hybrid_forward(self, F, x, weight, bias=None):
        x, weight, bias = self._low(F, x, weight, bias)
        with self._raw_names():
            if bias is None:
                return F.FullyConnected(x, weight, name=self.op_name, **self._kwargs)
            return F.FullyConnected(x, weight, bias, name=self.op_name, **self._kwargs)


class Dropout(LegacyNamed):
    """Dropout of rate ``p`` with the operator named ``name``: active in training, the identity
    otherwise. (Gluon's own would take a name from a process-wide counter.) ``axes`` share one
    draw along them: ``(1, 2)`` on (N, L, D) drops whole samples, which is stochastic depth."""

    def __init__(self, name, p, axes=()):
        super().__init__(name)
        self.p, self.axes = p, tuple(axes)

    def hybrid_forward(self, F, x):
        x = self._float32(F, x)  # no bfloat16 Dropout in MXNet 1.9
        with self._raw_names():
            return F.Dropout(x, p=self.p, axes=self.axes, name=self.op_name)


class ToFloat32(LegacyNamed):
    """Where a float32 region starts (see :func:`pin_float32`): the identity in a float32
    network, a cast to float32 in a low-precision one."""

    def hybrid_forward(self, F, x):
        return self._float32(F, x)


class Activation(LegacyNamed):
    """A parameter-free activation (``relu``, ``sigmoid``, ``tanh``, ``softrelu``, ``softsign``)."""

    def __init__(self, name, act_type):
        super().__init__(name)
        self.act_type = act_type

    def hybrid_forward(self, F, x):
        with self._raw_names():
            return F.Activation(x, act_type=self.act_type, name=self.op_name)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
