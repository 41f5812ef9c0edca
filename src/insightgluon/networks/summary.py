"""Parameter and FLOP counts of a network, from its symbolic graph."""
import json
from typing import NamedTuple, Tuple


class Summary(NamedTuple):
    """``params``: every learned and statistics array, as a checkpoint stores them;
    ``mmacs``: millions of multiply-accumulates of the learned convolutions and dense
    layers, and of attention's products, (the rest is negligible) in one forward pass of one image; ``mflops`` =
    2 x ``mmacs``, the convention of the published figures (r100: 24.2 GFLOPs);
    ``image_size``: the (height, width) counted at."""

    name: str
    params: int
    mmacs: float
    output_shape: Tuple[int, ...]
    image_size: Tuple[int, int] = (112, 112)

    @property
    def mflops(self) -> float:
        return 2 * self.mmacs


def summarize(name: str, image_size=None, **options) -> Summary:
    """Build ``name`` with ``options`` and count its parameters and MFLOPs for one image.

    Parameters
    ----------
    name : str
        A registered network name.
    image_size : int or (int, int), optional
        Input side or ``(height, width)``; default the size the network was made for
        (112x112; SphereNet 112x96).
    options
        Keyword arguments of :func:`insightgluon.networks.get_network`.
    """
    import mxnet as mx

    from insightgluon.networks.base import default_image_size, get_network

    if image_size is None:
        image_size = default_image_size(name)
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    sym = get_network(name, **options)(mx.sym.var("data"))
    internals = sym.get_internals()
    _, shapes, aux_shapes = internals.infer_shape(data=(1, 3, height, width))
    shape_of = dict(zip(internals.list_outputs(), shapes))
    params = sum(_size(shape_of[k]) for k in sym.list_arguments() if k != "data")
    params += sum(_size(s) for s in aux_shapes)
    macs = 0
    nodes = json.loads(sym.tojson())["nodes"]
    for node in nodes:
        out = shape_of.get(f"{node['name']}_output")
        if node["op"] == "batch_dot":  # attention: (..., M, K) x (..., K, P) per image
            source, index = node["inputs"][0][:2]
            left = nodes[source]["name"]
            inner = shape_of.get(f"{left}_output", shape_of.get(f"{left}_output{index}", shape_of.get(left)))
            transposed = node.get("attrs", {}).get("transpose_a", "False") == "True"
            macs += _size(out[1:]) * int(inner[-2] if transposed else inner[-1])
            continue
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        source = nodes[node["inputs"][1][0]]
        if source["op"] != "null":
            continue  # a computed weight: the fast PReLU's per-channel product, not a layer
        weight = _size(shape_of[source["name"]])
        # a conv weight is applied at every output position; a dense weight once per token
        macs += weight * _size(out[2:] if node["op"] == "Convolution" else out[1:-1])
    return Summary(name, params, macs / 1e6, tuple(shape_of[sym.list_outputs()[0]]), (height, width))


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
