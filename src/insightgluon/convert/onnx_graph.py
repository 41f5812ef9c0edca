"""An ONNX recognition model (InsightFace's packs) onto an arcface_torch zoo network.

PyTorch's ONNX export folds each BatchNorm that follows a convolution into it (the convolution
gains a bias) and keeps the others (a BatchNorm after a residual addition, ``bn1`` of every
``IBasicBlock``). The initialisers then carry numeric names, so they are matched by structure:
the graph's layers with weights (Conv, BatchNormalization, PRelu, Gemm, MatMul), in the order
the graph runs them, are laid onto the network's layers in its order, each onto the first
unfilled layer of its kind and shape within a few layers (an exporter may order a shortcut's
convolution before or after the residual branch). A folded BatchNorm comes back as one with
identity statistics: scale 1, mean 0, variance ``1 - eps`` (so ``sqrt(var + eps)`` is 1), and the
convolution's bias as its shift. What does not fit is one line naming the ONNX node and the
layer it should have filled.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError

WEIGHTED_OPS = ("Conv", "BatchNormalization", "PRelu", "Gemm", "MatMul")
# How far ahead of the first unfilled layer a graph's layer may land.
WINDOW = 6


class Unit:
    """One layer of the network: its kind (conv, bn, prelu, dense) and parameter names."""

    def __init__(self, base: str, kind: str, names: Dict[str, str], shapes: Dict[str, Tuple[int, ...]]):
        self.base, self.kind, self.names, self.shapes = base, kind, names, shapes
        self.filled = False

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        key = "gamma" if self.kind in ("bn", "prelu") else "weight"
        return self.shapes[self.names[key]]


def network_units(shapes: Dict[str, Tuple[int, ...]]) -> List[Unit]:
    """The network's weighted layers in parameter order (which is the order they run in)."""
    grouped: Dict[str, Dict[str, str]] = {}
    for name in shapes:
        for suffix in ("weight", "bias", "gamma", "beta", "moving_mean", "moving_var"):
            if name.endswith("_" + suffix):
                grouped.setdefault(name[:-len(suffix) - 1], {})[suffix] = name
                break
        else:
            raise CheckpointError(f"parameter {name}: not a layer ONNX conversion can fill")
    units = []
    for base, names in grouped.items():
        if "moving_mean" in names:
            kind = "bn"
        elif "gamma" in names:
            kind = "prelu"
        else:
            kind = "conv" if len(shapes[names["weight"]]) == 4 else "dense"
        units.append(Unit(base, kind, names, {n: shapes[n] for n in names.values()}))
    return units


def _load(path: str):
    """The ONNX model of ``path``; a missing or damaged file is one line."""
    import onnx

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        return onnx.load(path)
    except Exception as err:  # noqa: BLE001 -- protobuf raises several kinds for a damaged file
        raise CheckpointError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def _constants(model) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node, name, default=None):
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _inputs(node, values) -> List[Optional[np.ndarray]]:
    return [values.get(name) if name else None for name in node.input]


def self_normalising(model) -> bool:
    """Whether the graph scales its own input (a Sub/Mul/Div before the first Conv), as the
    ``insightface`` package tells raw-pixel models from ones that expect ``(x - 127.5) / 127.5``."""
    for node in model.graph.node:
        if node.op_type == "Conv":
            return False
        if node.op_type in ("Sub", "Mul", "Div"):
            return True
    return False


def map_onnx(path: str, network: str, net, bn_eps: float) -> Dict[str, np.ndarray]:
    """``path``'s weights as ``net``'s parameters (``network`` names it in errors).

    ``bn_eps`` is the network's BatchNorm epsilon: a graph BatchNorm with another epsilon has its
    variance shifted so ``sqrt(var + eps)`` is unchanged.
    """
    from insightgluon.networks.identify import parameter_shapes

    model = _load(path)
    values = _constants(model)
    units = network_units(parameter_shapes(net))
    params: Dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        arrays = _inputs(node, values)
        if node.op_type == "MatMul" and arrays[1] is None:
            continue  # two computed operands (attention): no weights
        if any(a is not None for a in arrays[:1]):
            continue  # a constant folded into the input side: not a layer
        _fill(node, arrays, units, params, path, network, bn_eps)
    empty = [u for u in units if not u.filled]
    if empty:
        raise CheckpointError(f"{path}: the graph has no layer for {network}'s {empty[0].base} "
                              f"({len(empty)} of {len(units)} layers unfilled): not a {network} graph")
    return {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}


def _take(units: List[Unit], kind: str, shape: Tuple[int, ...], node, path: str, network: str) -> int:
    """Index of the first unfilled ``kind`` layer of weight ``shape`` within the window."""
    first = next((i for i, u in enumerate(units) if not u.filled), None)
    if first is None:
        raise CheckpointError(f"{path}: ONNX {node.op_type} '{node.name}' is beyond the last layer of {network}: "
                              f"not a {network} graph")
    for i in range(first, min(first + WINDOW, len(units))):
        unit = units[i]
        if not unit.filled and unit.kind == kind and unit.weight_shape == shape:
            unit.filled = True
            return i
    expected = units[first]
    raise CheckpointError(f"{path}: ONNX {node.op_type} '{node.name}' with weight {shape} where {network} has "
                          f"{expected.base} ({expected.kind} {expected.weight_shape}): not a {network} graph")


def _identity_bn(unit: Unit, shift: np.ndarray, params, eps: float) -> None:
    channels = unit.shapes[unit.names["gamma"]][0]
    params[unit.names["gamma"]] = np.ones(channels, np.float32)
    params[unit.names["beta"]] = shift.astype(np.float32)
    params[unit.names["moving_mean"]] = np.zeros(channels, np.float32)
    params[unit.names["moving_var"]] = np.full(channels, 1.0 - eps, np.float32)


def _bias(units, index, bias, params, path, node, network, eps) -> None:
    """A layer's bias: its own, or the shift of the BatchNorm folded into it."""
    unit = units[index]
    if "bias" in unit.names:
        params[unit.names["bias"]] = bias
        return
    after = units[index + 1] if index + 1 < len(units) else None
    if (after is not None and after.kind == "bn" and not after.filled
            and after.shapes[after.names["beta"]] == bias.shape):
        after.filled = True
        _identity_bn(after, bias, params, eps)
        return
    if not np.any(bias):
        return
    raise CheckpointError(f"{path}: ONNX {node.op_type} '{node.name}' has a bias that {network}'s {unit.base} "
                          f"cannot hold (no bias, no BatchNorm after it)")


def _fill(node, arrays, units, params, path, network, eps) -> None:
    op = node.op_type
    if op == "Conv":
        weight, bias = arrays[1], arrays[2] if len(arrays) > 2 else None
        index = _take(units, "conv", tuple(weight.shape), node, path, network)
        params[units[index].names["weight"]] = weight
        if bias is not None:
            _bias(units, index, bias, params, path, node, network, eps)
    elif op == "BatchNormalization":
        scale, shift, mean, var = arrays[1:5]
        unit = units[_take(units, "bn", tuple(scale.shape), node, path, network)]
        theirs = float(_attr(node, "epsilon", 1e-5))
        params.update({unit.names["gamma"]: scale, unit.names["beta"]: shift, unit.names["moving_mean"]: mean,
                       unit.names["moving_var"]: var + np.float32(theirs - eps)})
    elif op == "PRelu":
        slope = arrays[1].reshape(-1)
        unit = next((u for u in units if not u.filled), None)
        channels = unit.weight_shape if unit is not None and unit.kind == "prelu" else tuple(slope.shape)
        if slope.size == 1 and channels != (1,):
            slope = np.full(channels, slope[0], np.float32)
        unit = units[_take(units, "prelu", tuple(slope.shape), node, path, network)]
        params[unit.names["gamma"]] = slope
    else:  # Gemm, MatMul: a dense layer
        weight = arrays[1]
        if op == "MatMul" or not _attr(node, "transB", 0):
            weight = weight.T
        index = _take(units, "dense", tuple(weight.shape), node, path, network)
        params[units[index].names["weight"]] = weight
        bias = arrays[2] if op == "Gemm" and len(arrays) > 2 else None
        if bias is not None:
            _bias(units, index, bias, params, path, node, network, eps)


def onnx_embedding_width(path: str) -> int:
    """The embedding width of an ONNX recognition model: its output's last dimension, else the
    width of its last dense layer or BatchNorm."""
    model = _load(path)
    dims = model.graph.output[0].type.tensor_type.shape.dim if model.graph.output else []
    if dims and dims[-1].dim_value > 0:
        return int(dims[-1].dim_value)
    values = _constants(model)
    for node in reversed(model.graph.node):
        if node.op_type == "BatchNormalization" and node.input[1] in values:
            return int(values[node.input[1]].shape[0])
        if node.op_type == "Gemm" and node.input[1] in values:
            weight = values[node.input[1]]
            return int(weight.shape[0] if _attr(node, "transB", 0) else weight.shape[1])
    raise CheckpointError(f"{path}: cannot tell the embedding width of this graph")
