"""The three MTCNN networks as Gluon HybridBlocks, and their pretrained weights.

Zhang et al. 2016, "Joint Face Detection and Alignment using Multi-task
Cascaded Convolutional Networks" (https://arxiv.org/abs/1604.02878).
The weights are the ones the MIT-licensed ``mtcnn`` wheel on PyPI ships as
``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``: joblib pickles holding lists of
NumPy arrays in Keras order. Only those arrays are read; the ``mtcnn`` package
itself is never imported (its import needs TensorFlow).

Layout facts the conversion relies on (checked by ``tests/test_align_mtcnn.py``):

* conv kernels are HWIO -> MXNet OIHW;
* PReLU slopes are ``(1, 1, C)`` after convolutions and ``(C,)`` after dense layers;
* dense kernels are ``(in, out)``; the flattened input was laid out as
  ``(W, H, C)`` (the Keras model permutes height and width before flattening,
  a legacy of the column-major original), while MXNet flattens ``(C, H, W)``;
* max-pooling rounds the output size up (Caffe / Keras "same" on these sizes),
  which is MXNet's ``pooling_convention="full"``.
"""
import importlib.util
import os
from typing import List

import numpy as np
from mxnet import gluon, nd
from mxnet.gluon import nn

from insightgluon.errors import CheckpointError

PIP_HINT = "pip install mtcnn==1.0.0 joblib lz4"


def weights_dir() -> str:
    """Directory of the ``mtcnn`` wheel's weight files (without importing the package).

    Raises
    ------
    CheckpointError
        If the wheel is not installed, naming the pip command that installs it.
    """
    spec = importlib.util.find_spec("mtcnn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for root in locations:
        path = os.path.join(root, "assets", "weights")
        if os.path.isdir(path):
            return path
    raise CheckpointError(
        f"mtcnn weights not found: the 'mtcnn' wheel is not installed; run '{PIP_HINT}'")


def load_weight_arrays(name: str, directory: str = "") -> List[np.ndarray]:
    """The Keras-ordered arrays of ``pnet``, ``rnet`` or ``onet``."""
    path = os.path.join(directory or weights_dir(), f"{name}.lz4")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: MTCNN weight file is missing; reinstall with '{PIP_HINT}'")
    try:
        import joblib  # noqa: WPS433 -- optional dependency, needed only here

        arrays = joblib.load(path)
    except ImportError as err:
        raise CheckpointError(f"{path}: reading MTCNN weights needs joblib and lz4 ({err}); "
                              f"run '{PIP_HINT}'") from None
    except Exception as err:  # joblib raises many types for a corrupt file
        raise CheckpointError(f"{path}: not a readable MTCNN weight file ({err})") from None
    if not isinstance(arrays, list) or not all(isinstance(a, np.ndarray) for a in arrays):
        raise CheckpointError(f"{path}: expected a list of NumPy arrays")
    return arrays


class _Net(gluon.HybridBlock):
    """Shared weight loading: ``self._layers`` lists the blocks in Keras order."""

    _layers: List[str] = []
    weight_name = ""
    # Dense layers fed by a flattened feature map: name -> (channels, side).
    _flatten_inputs: dict = {}

    def load_keras(self, arrays: List[np.ndarray]) -> None:
        """Copy Keras-ordered arrays into this network's parameters."""
        pending = list(arrays)
        for layer_name in self._layers:
            layer = getattr(self, layer_name)
            if isinstance(layer, nn.PReLU):
                self._assign(layer.alpha, pending.pop(0).reshape(-1))
            elif isinstance(layer, nn.Conv2D):
                self._assign(layer.weight, pending.pop(0).transpose(3, 2, 0, 1))
                self._assign(layer.bias, pending.pop(0))
            else:
                kernel = pending.pop(0)
                if layer_name in self._flatten_inputs:
                    kernel = self._flattened_kernel(layer_name, kernel)
                self._assign(layer.weight, kernel.T)
                self._assign(layer.bias, pending.pop(0))
        if pending:
            raise CheckpointError(f"{self.weight_name}: {len(pending)} unexpected extra arrays")

    def _flattened_kernel(self, layer_name: str, kernel: np.ndarray) -> np.ndarray:
        channels, side = self._flatten_inputs[layer_name]
        if kernel.shape[0] != channels * side * side:
            raise CheckpointError(f"{self.weight_name}: {layer_name} kernel has shape {kernel.shape}, "
                                  f"expected ({channels * side * side}, ...)")
        # Keras rows are indexed (w, h, c); MXNet's flatten is (c, h, w).
        out = kernel.shape[1]
        return kernel.reshape(side, side, channels, out).transpose(2, 1, 0, 3).reshape(-1, out)

    def _assign(self, param: gluon.Parameter, value: np.ndarray) -> None:
        if tuple(param.shape) != tuple(value.shape):
            raise CheckpointError(
                f"{self.weight_name}: {param.name} expects shape {param.shape}, file has {value.shape}")
        param.set_data(nd.array(value, dtype="float32"))


def _conv(channels: int, kernel: int, in_channels: int) -> nn.Conv2D:
    return nn.Conv2D(channels, kernel, in_channels=in_channels)


def _pool(size: int) -> nn.MaxPool2D:
    return nn.MaxPool2D(size, 2, ceil_mode=True)


class PNet(_Net):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2.

    Input (N, 3, H, W) normalised RGB; output ``(prob (N, 2, h, w), reg (N, 4, h, w))``
    with ``h = ceil((H - 2) / 2) - 4``; ``prob[:, 1]`` is the face probability.
    """

    weight_name = "pnet"
    _layers = ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4_reg", "conv4_cls"]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.prelu1, self.pool1 = _conv(10, 3, 3), nn.PReLU(in_channels=10), _pool(2)
        self.conv2, self.prelu2 = _conv(16, 3, 10), nn.PReLU(in_channels=16)
        self.conv3, self.prelu3 = _conv(32, 3, 16), nn.PReLU(in_channels=32)
        self.conv4_reg, self.conv4_cls = _conv(4, 1, 32), _conv(2, 1, 32)

    def hybrid_forward(self, F, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return F.softmax(self.conv4_cls(x), axis=1), self.conv4_reg(x)


class RNet(_Net):
    """Refinement net on 24x24 crops: ``(prob (N, 2), reg (N, 4))``."""

    weight_name = "rnet"
    _layers = ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "fc4", "prelu4",
               "fc_reg", "fc_cls"]
    _flatten_inputs = {"fc4": (64, 3)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.prelu1, self.pool1 = _conv(28, 3, 3), nn.PReLU(in_channels=28), _pool(3)
        self.conv2, self.prelu2, self.pool2 = _conv(48, 3, 28), nn.PReLU(in_channels=48), _pool(3)
        self.conv3, self.prelu3 = _conv(64, 2, 48), nn.PReLU(in_channels=64)
        self.fc4, self.prelu4 = nn.Dense(128, in_units=576), nn.PReLU(in_channels=128)
        self.fc_reg, self.fc_cls = nn.Dense(4, in_units=128), nn.Dense(2, in_units=128)

    def hybrid_forward(self, F, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.fc4(self.prelu3(self.conv3(x))))
        return F.softmax(self.fc_cls(x), axis=1), self.fc_reg(x)


class ONet(_Net):
    """Output net on 48x48 crops: ``(prob (N, 2), reg (N, 4), points (N, 10))``.

    ``points`` are x1..x5 then y1..y5, as fractions of the box size.
    """

    weight_name = "onet"
    _layers = ["conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4",
               "fc5", "prelu5", "fc_reg", "fc_points", "fc_cls"]
    _flatten_inputs = {"fc5": (128, 3)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv1, self.prelu1, self.pool1 = _conv(32, 3, 3), nn.PReLU(in_channels=32), _pool(3)
        self.conv2, self.prelu2, self.pool2 = _conv(64, 3, 32), nn.PReLU(in_channels=64), _pool(3)
        self.conv3, self.prelu3, self.pool3 = _conv(64, 3, 64), nn.PReLU(in_channels=64), _pool(2)
        self.conv4, self.prelu4 = _conv(128, 2, 64), nn.PReLU(in_channels=128)
        self.fc5, self.prelu5 = nn.Dense(256, in_units=1152), nn.PReLU(in_channels=256)
        self.fc_reg, self.fc_points = nn.Dense(4, in_units=256), nn.Dense(10, in_units=256)
        self.fc_cls = nn.Dense(2, in_units=256)

    def hybrid_forward(self, F, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.fc5(self.prelu4(self.conv4(x))))
        return F.softmax(self.fc_cls(x), axis=1), self.fc_reg(x), self.fc_points(x)


def load_networks(ctx=None, directory: str = ""):
    """Build P-Net, R-Net and O-Net with the pretrained weights on ``ctx``.

    Returns
    -------
    (PNet, RNet, ONet), hybridized.
    """
    nets = []
    for cls in (PNet, RNet, ONet):
        net = cls()
        net.initialize(ctx=ctx)
        net.load_keras(load_weight_arrays(cls.weight_name, directory))
        net.hybridize()
        nets.append(net)
    return tuple(nets)
