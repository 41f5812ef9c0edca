"""MTCNN's three networks as OpenVINO models, built from the same loaded Gluon networks.

Each Gluon layer becomes its OpenVINO operation (convolution + bias, per-channel PReLU, max
pooling with ceil rounding as MXNet's ``ceil_mode``, dense as a transposed matmul on the
``(c, h, w)``-flattened map, softmax over the two classes), with the weights copied from the
Gluon parameters: one source of weights, two engines. P-Net's input height and width are
dynamic, so one compiled model serves every pyramid level. Computed in float32: the
detection thresholds were set on float32 scores.
"""
from typing import Callable, List, Sequence, Tuple

import numpy as np

Stage = Callable[[np.ndarray], List[np.ndarray]]


def _weights(param) -> np.ndarray:
    return param.data().asnumpy().astype(np.float32)


class _Builder:
    """Emits OpenVINO operations for the Gluon layers of one network."""

    def __init__(self, ops, net):
        self.ops, self.net = ops, net

    def conv(self, x, name: str):
        layer = getattr(self.net, name)
        weight = _weights(layer.weight)
        y = self.ops.convolution(x, self.ops.constant(weight), [1, 1], [0, 0], [0, 0], [1, 1])
        return self.ops.add(y, self.ops.constant(_weights(layer.bias).reshape(1, -1, 1, 1)))

    def prelu(self, x, name: str):
        return self.ops.prelu(x, self.ops.constant(_weights(getattr(self.net, name).alpha).reshape(-1)))

    def pool(self, x, size: int):
        return self.ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [size, size], rounding_type="ceil").output(0)

    def dense(self, x, name: str):
        layer = getattr(self.net, name)
        if len(x.get_output_partial_shape(0)) != 2:
            x = self.ops.reshape(x, self.ops.constant(np.array([0, -1], dtype=np.int64)), special_zero=True)
        y = self.ops.matmul(x, self.ops.constant(_weights(layer.weight)), False, True)
        return self.ops.add(y, self.ops.constant(_weights(layer.bias)))


def _pnet(b: _Builder, x):
    x = b.pool(b.prelu(b.conv(x, "conv1"), "prelu1"), 2)
    x = b.prelu(b.conv(b.prelu(b.conv(x, "conv2"), "prelu2"), "conv3"), "prelu3")
    return [b.ops.softmax(b.conv(x, "conv4_cls"), 1), b.conv(x, "conv4_reg")]


def _rnet(b: _Builder, x):
    x = b.pool(b.prelu(b.conv(x, "conv1"), "prelu1"), 3)
    x = b.pool(b.prelu(b.conv(x, "conv2"), "prelu2"), 3)
    x = b.prelu(b.dense(b.prelu(b.conv(x, "conv3"), "prelu3"), "fc4"), "prelu4")
    return [b.ops.softmax(b.dense(x, "fc_cls"), 1), b.dense(x, "fc_reg")]


def _onet(b: _Builder, x):
    x = b.pool(b.prelu(b.conv(x, "conv1"), "prelu1"), 3)
    x = b.pool(b.prelu(b.conv(x, "conv2"), "prelu2"), 3)
    x = b.pool(b.prelu(b.conv(x, "conv3"), "prelu3"), 2)
    x = b.prelu(b.dense(b.prelu(b.conv(x, "conv4"), "prelu4"), "fc5"), "prelu5")
    return [b.ops.softmax(b.dense(x, "fc_cls"), 1), b.dense(x, "fc_reg"), b.dense(x, "fc_points")]


def _compile(net, build, side: int, threads: int) -> Stage:
    import openvino as ov
    import openvino.opset13 as ops

    from insightgluon.openvino_cpu import compile_model

    data = ops.parameter([-1, 3, -1 if side is None else side, -1 if side is None else side], np.float32,
                         name="data")
    outputs = build(_Builder(ops, net), data)
    compiled = compile_model(ov.Model(outputs, [data], net.weight_name), "float32", threads,
                             label=f"MTCNN {net.weight_name}")
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> List[np.ndarray]:
        result = request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)}, share_inputs=True)
        return [result[compiled.output(i)].copy() for i in range(len(outputs))]

    return run


def openvino_stages(networks: Sequence, threads: int = 0) -> Tuple[Stage, Stage, Stage]:
    """P-Net, R-Net and O-Net (loaded Gluon networks) compiled by OpenVINO for the CPU.

    Each stage maps a float32 ``(N, 3, H, W)`` batch to the Gluon network's outputs as NumPy.
    """
    pnet, rnet, onet = networks
    return (_compile(pnet, _pnet, None, threads), _compile(rnet, _rnet, 24, threads),
            _compile(onet, _onet, 48, threads))


def mxnet_stages(networks: Sequence, ctx) -> Tuple[Stage, Stage, Stage]:
    """The same stages run by the Gluon networks themselves on ``ctx``."""
    import mxnet as mx

    def stage(net) -> Stage:
        return lambda batch: [out.asnumpy() for out in net(mx.nd.array(batch, ctx=ctx))]

    return tuple(stage(net) for net in networks)
