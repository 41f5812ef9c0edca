"""An arcface_torch ``iresnet`` as PyTorch's ONNX export writes it, from a state dict, without PyTorch.

``torch.onnx.export(..., do_constant_folding=True)`` of an eval-mode IResNet folds each BatchNorm
that follows a convolution into it (the convolution gains a bias), keeps the others (``bn1`` of
each block after the residual addition, ``bn2``, ``features``), writes PReLU slopes as (C, 1, 1)
and the dense layer as ``Gemm`` with ``transB=1``; InsightFace's packs (``w600k_r50.onnx``) are such
graphs, fed ``(x - 127.5) / 127.5``. This writes the same graph so the tests can convert it.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EPS = 1e-5


class _Graph:
    def __init__(self, state):
        self.state, self.nodes, self.inits, self.count = state, [], [], 0

    def const(self, value) -> str:
        name = str(len(self.inits) + 1000)  # numeric names, as the exporter gives folded tensors
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def node(self, op, inputs, **attrs) -> str:
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.count}", **attrs))
        return out

    def conv_bn(self, x, conv, bn, stride, pad) -> str:
        s = self.state
        scale = s[f"{bn}.weight"].astype(np.float64) / np.sqrt(s[f"{bn}.running_var"].astype(np.float64) + EPS)
        weight = s[f"{conv}.weight"].astype(np.float64) * scale[:, None, None, None]
        bias = s[f"{bn}.bias"] - s[f"{bn}.running_mean"] * scale
        k = weight.shape[-1]
        return self.node("Conv", [x, self.const(weight), self.const(bias)], kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4)

    def bn(self, x, key) -> str:
        s = self.state
        return self.node("BatchNormalization", [x] + [self.const(s[f"{key}.{leaf}"]) for leaf in
                                                      ("weight", "bias", "running_mean", "running_var")],
                         epsilon=EPS)

    def prelu(self, x, key) -> str:
        return self.node("PRelu", [x, self.const(self.state[f"{key}.weight"].reshape(-1, 1, 1))])


def write_iresnet_onnx(state, layers, path: str) -> str:
    """``state`` (arcface_torch keys) of an IResNet with ``layers`` blocks per stage, as folded ONNX."""
    g = _Graph(state)
    x = g.prelu(g.conv_bn("input.1", "conv1", "bn1", 1, 1), "prelu")
    for stage, count in enumerate(layers, start=1):
        for i in range(count):
            block, stride = f"layer{stage}.{i}", 2 if i == 0 else 1
            y = g.conv_bn(g.bn(x, f"{block}.bn1"), f"{block}.conv1", f"{block}.bn2", 1, 1)
            y = g.conv_bn(g.prelu(y, f"{block}.prelu"), f"{block}.conv2", f"{block}.bn3", stride, 1)
            shortcut = g.conv_bn(x, f"{block}.downsample.0", f"{block}.downsample.1", stride, 0) if i == 0 else x
            x = g.node("Add", [y, shortcut])
    x = g.node("Flatten", [g.bn(x, "bn2")], axis=1)
    x = g.node("Gemm", [x, g.const(state["fc.weight"]), g.const(state["fc.bias"])], transB=1)
    x = g.bn(x, "features")
    emb = state["fc.weight"].shape[0]
    graph = helper.make_graph(
        g.nodes[:-1] + [helper.make_node("BatchNormalization", list(g.nodes[-1].input), ["683"],
                                         name="BatchNormalization_out", epsilon=EPS)], "iresnet",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", emb])], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, path)
    return path
