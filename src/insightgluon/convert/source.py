"""A model of another framework as a zoo network with its weights, and as an MXNet checkpoint.

:func:`load_converted` reads an arcface_torch ``.pth`` (:mod:`.pth`, mapped by :mod:`.state_dict`)
or an ONNX recognition model (:mod:`.onnx_graph`) into the matching zoo network, found by its
parameter names when not given; :func:`write_checkpoint` saves it as ``PREFIX-symbol.json`` +
``PREFIX-0000.params`` in float32, the graph normalising its raw RGB input itself.
"""
import logging
import os
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from insightgluon.errors import CheckpointError

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pth", ".pt")
ONNX_SUFFIXES = (".onnx",)
# Families whose ONNX export is convolutions, BatchNorms, PReLUs and dense layers only.
ONNX_FAMILIES = ("iresnet", "mbf")


class Converted(NamedTuple):
    """A zoo network holding a converted model's weights (initialised on the CPU)."""

    network: str
    emb_size: int
    net: object
    source: str


def load_converted(path: str, network: Optional[str] = None) -> Converted:
    """Read ``path`` (``.pth``/``.pt`` or ``.onnx``) into zoo network ``network``.

    Without ``network`` the arcface_torch network whose parameters the file holds is found by
    name (a ``.pth``) or tried in turn (an ``.onnx``). A file that fits no network, or not the
    one given, raises :class:`CheckpointError` naming the first parameter that differs.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if path.lower().endswith(ONNX_SUFFIXES):
        return _from_onnx(path, network)
    if path.lower().endswith(TORCH_SUFFIXES):
        return _from_state_dict(path, network)
    raise CheckpointError(f"{path}: convert reads a PyTorch state dict (.pth, .pt) or an ONNX model (.onnx)")


def _network_checked(network: str) -> None:
    from insightgluon.convert.state_dict import torch_networks
    from insightgluon.networks.base import NETWORKS

    NETWORKS.get(network)  # unknown names: the registry's one line
    if network not in torch_networks():
        raise CheckpointError(f"--network {network}: a 2018 network; arcface_torch files convert to "
                              f"{', '.join(torch_networks())}")


def _from_state_dict(path: str, network: Optional[str]) -> Converted:
    from insightgluon.convert.pth import read_state_dict
    from insightgluon.convert.state_dict import embedding_width, identify_torch_network, map_state_dict
    from insightgluon.networks.base import get_network

    state = read_state_dict(path)
    if network is None:
        network = identify_torch_network(state)
        if network is None:
            raise CheckpointError(f"{path}: its parameter names fit no arcface_torch network; name one with "
                                  f"--network to see the first that differs")
        logger.info("%s: the parameters of %s", path, network)
    _network_checked(network)
    emb_size = embedding_width(state, network)
    net = get_network(network, emb_size=emb_size)
    params = map_state_dict(state, network, net, path)
    return Converted(network, emb_size, _loaded(net, params), path)


def _from_onnx(path: str, network: Optional[str]) -> Converted:
    from insightgluon.convert.onnx_graph import map_onnx, onnx_embedding_width
    from insightgluon.convert.state_dict import torch_networks
    from insightgluon.networks.base import get_network
    from insightgluon.networks.iresnet import TORCH_BN_EPS

    emb_size = onnx_embedding_width(path)
    if network is not None:
        _network_checked(network)
        if not network.startswith(ONNX_FAMILIES):
            raise CheckpointError(f"{path}: ONNX conversion maps {', '.join(f'{f}*' for f in ONNX_FAMILIES)} graphs; "
                                  f"run a {network} ONNX model as it is with --engine onnxruntime or openvino")
        candidates = [network]
    else:
        candidates = [n for n in torch_networks() if n.startswith(ONNX_FAMILIES)]
    first_error = None
    for name in candidates:
        net = get_network(name, emb_size=emb_size)
        try:
            params = map_onnx(path, name, net, TORCH_BN_EPS)
        except CheckpointError as err:
            if network is not None:
                raise
            first_error = first_error or err
            continue
        logger.info("%s: the graph of %s", path, name)
        return Converted(name, emb_size, _loaded(net, params), path)
    raise CheckpointError(f"{path}: the graph is none of {', '.join(candidates)} (it still runs as it is with "
                          f"--engine onnxruntime or openvino)")


def _loaded(net, params: Dict[str, np.ndarray]):
    """``net`` initialised on the CPU with ``params`` (every one of its parameters)."""
    import mxnet as mx

    net.initialize(ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, 112, 112)))  # deferred shapes
    for name, param in net.collect_params().items():
        param.set_data(mx.nd.array(params[name]))
    return net


def write_checkpoint(converted: Converted, prefix: str, epoch: int = 0) -> Tuple[str, str]:
    """Save ``converted`` as ``prefix-symbol.json`` + ``prefix-%04d.params`` (float32 graph)."""
    from insightgluon.export.deploy import save_checkpoint
    from insightgluon.nn import float32_symbol

    symbol = float32_symbol(converted.net)
    params = {name: param.data() for name, param in converted.net.collect_params().items()}
    return save_checkpoint(prefix, epoch, symbol, params)


def embed(converted: Converted, images: np.ndarray) -> np.ndarray:
    """``converted``'s embedding of raw RGB ``images`` (N, 3, 112, 112), float32."""
    import mxnet as mx

    return converted.net(mx.nd.array(images)).asnumpy()


def module_embedding(prefix: str, epoch: int, images: np.ndarray, layer: str = "fc1") -> np.ndarray:
    """The embedding of ``images`` by the checkpoint as plain ``mx.mod.Module`` binds it (the 2018 way)."""
    import mxnet as mx

    symbol, args, auxs = mx.model.load_checkpoint(prefix, epoch)
    symbol = symbol.get_internals()[f"{layer}_output"]
    module = mx.mod.Module(symbol, data_names=("data",), label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", images.shape)], for_training=False)
    module.set_params(args, auxs)
    module.forward(mx.io.DataBatch([mx.nd.array(images)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def onnx_embedding(path: str, images: np.ndarray) -> np.ndarray:
    """``path``'s own embedding of raw RGB ``images`` by onnxruntime, fed as the graph expects: raw
    when it scales its input itself, else ``(x - 127.5) / 127.5`` (InsightFace's convention)."""
    import onnx
    import onnxruntime

    from insightgluon.convert.onnx_graph import self_normalising

    feed = images if self_normalising(onnx.load(path)) else (images - 127.5) / 127.5
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed.astype(np.float32)})[0]

