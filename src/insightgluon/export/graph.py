"""Rewrite the native PReLU layers of any MXNet graph into the fast form.

A checkpoint written by the 2018 InsightFace code (or any MXNet face model) computes
its PReLUs with ``LeakyReLU(act_type='prelu')``, which has no MKLDNN kernel and is
slow on a CPU. :func:`fast_prelu_symbol` replaces every such node by the operators
:class:`insightgluon.nn.PReLU` emits for that layer: the same slope variable (so the
same ``.params`` load), the same output name, and in float32 the same numbers bit for
bit (see the docstring of :mod:`insightgluon.nn.prelu`).
Everything else in the graph is left as it is, so this works on graphs that are no
zoo network. ``bench/graph_prelu.py``: the rewritten graph's forward at batch 32 runs
1.55x as fast as the saved one for y1, 1.13x for r50.

The rewrite works on the graph's JSON (``symbol.tojson()``): nodes in topological
order, each input an entry ``[node index, output index, version]``.

The ONNX export keeps the fast form rather than fusing it back into one ``PRelu``:
onnxruntime 1.32 runs the decomposition faster (``bench/onnx_prelu.py``, two runs:
y1 1.5-1.9x at batch 1 and 1.3-1.45x at batch 32, r50 0.98-1.12x).
"""
import json
import logging
from typing import Dict, List, Sequence

logger = logging.getLogger(__name__)

__all__ = ["count_prelu", "fast_prelu_symbol", "is_native_prelu"]


def is_native_prelu(node: dict) -> bool:
    """True for a ``LeakyReLU(act_type='prelu')`` node of a graph's JSON."""
    return node["op"] == "LeakyReLU" and (node.get("attrs") or {}).get("act_type") == "prelu"


def count_prelu(symbol) -> int:
    """Number of ``LeakyReLU(act_type='prelu')`` nodes in ``symbol``."""
    return sum(is_native_prelu(node) for node in json.loads(symbol.tojson())["nodes"])


def fast_prelu_symbol(symbol, input_shape: Sequence[int], input_name: str = "data"):
    """``symbol`` with every ``LeakyReLU(act_type='prelu')`` in the fast PReLU form.

    Parameters
    ----------
    symbol : mx.sym.Symbol
        Any graph (one or several outputs).
    input_shape : sequence of int
        Shape of ``input_name`` used to infer each PReLU's channel count, e.g.
        ``(1, 3, 112, 112)``.
    input_name : str
        The graph's image input.

    Returns
    -------
    mx.sym.Symbol
        The rewritten graph, or ``symbol`` itself when it has no PReLU. A PReLU
        whose input is neither ``(N, C, H, W)`` nor ``(N, C)``, or whose slope is
        not of shape ``(C,)`` (one slope shared by all channels), stays native.
    """
    import mxnet as mx

    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    targets = [i for i, node in enumerate(nodes) if is_native_prelu(node)]
    if not targets:
        return symbol
    # The PReLU outputs are probed too: a slope's shape is inferred from its consumer.
    shapes = _entry_shapes(graph, [e for i in targets for e in nodes[i]["inputs"][:2]]
                           + [[i, 0, 0] for i in targets], input_name, input_shape)
    layers = {}
    for k, index in enumerate(targets):
        data_shape, slope_shape = shapes[2 * k], shapes[2 * k + 1]
        if len(data_shape) in (2, 4) and tuple(slope_shape) == (data_shape[1],):
            layers[index] = _fast_nodes(nodes[index]["name"], int(data_shape[1]), len(data_shape) == 4)
            slope = nodes[nodes[index]["inputs"][1][0]]
            if slope["op"] == "null":
                # Behind a reshape the slope's shape can no longer be inferred from its consumer
                # (a Module binds such a graph from the input shape alone), so it is declared.
                slope.setdefault("attrs", {})["__shape__"] = f"({int(data_shape[1])},)"
    taken = {node["name"] for node in nodes}
    new_nodes: List[dict] = []
    moved: Dict[int, list] = {}  # old node index -> its (first) output entry in new_nodes

    def entry(old):
        head = moved[old[0]]
        return [head[0], head[1] + old[1], 0]

    for index, node in enumerate(nodes):
        inputs = [entry(e) for e in node["inputs"]]
        if index not in layers:
            new_nodes.append(dict(node, inputs=inputs))
            moved[index] = [len(new_nodes) - 1, 0]
            continue
        moved[index] = _splice(new_nodes, layers[index], inputs[:2], node["name"], taken)
    graph["nodes"] = new_nodes
    graph["heads"] = [entry(e) for e in graph["heads"]]
    graph["arg_nodes"] = [i for i, node in enumerate(new_nodes) if node["op"] == "null"]
    graph.pop("node_row_ptr", None)
    logger.debug("fast PReLU: %d of %d PReLU layers rewritten", len(layers), len(targets))
    return mx.sym.load_json(json.dumps(graph))


def _entry_shapes(graph: dict, entries: List[list], input_name: str, input_shape) -> List[tuple]:
    """Shapes of graph ``entries`` (``[node, output, version]``) at ``input_shape``."""
    import mxnet as mx

    probe = dict(graph, heads=[[e[0], e[1], 0] for e in entries])
    probe.pop("node_row_ptr", None)
    group = mx.sym.load_json(json.dumps(probe))
    if input_name not in group.list_arguments():
        raise ValueError(f"the graph has no input '{input_name}' before its PReLU layers")
    try:
        _, shapes, _ = group.infer_shape(**{input_name: tuple(input_shape)})
    except mx.base.MXNetError as err:
        raise ValueError(f"cannot infer the PReLU channel counts at input shape {tuple(input_shape)} "
                         f"({str(err).strip().splitlines()[0]})") from None
    if shapes is None or any(not s for s in shapes):
        raise ValueError(f"cannot infer the PReLU channel counts at input shape {tuple(input_shape)}")
    return [tuple(s) for s in shapes]


def _fast_nodes(name: str, channels: int, spatial: bool) -> dict:
    """JSON of the fast PReLU of layer ``name`` on placeholder inputs ``x`` then ``gamma``."""
    import mxnet as mx

    from insightgluon.nn.prelu import PReLU

    block = PReLU(name, channels, spatial=spatial)
    # hybrid_forward on symbols: exactly the operators the block emits in a network, with its
    # slope taken from the graph instead of a fresh variable.
    out = block.hybrid_forward(mx.sym, mx.sym.var("x"), mx.sym.var("gamma"))
    return json.loads(out.tojson())


def _splice(new_nodes: List[dict], layer: dict, inputs: List[list], name: str, taken: set) -> list:
    """Append ``layer``'s operator nodes reading ``inputs`` (x, gamma); returns its output entry."""
    local = {}
    placeholders = {"x": inputs[0], "gamma": inputs[1]}
    for j, node in enumerate(layer["nodes"]):
        if node["op"] == "null":
            local[j] = placeholders[node["name"]][:2]
            continue
        node = dict(node, inputs=[[local[e[0]][0], local[e[0]][1] + e[1], 0] for e in node["inputs"]])
        if node["name"] != name and not node["name"].startswith(f"{name}_"):
            # An automatically named operator (``reshape0``) would repeat in every layer.
            node["name"] = f"{name}_{node['name']}"
        if node["name"] in taken and node["name"] != name:
            raise ValueError(f"fast PReLU of '{name}': the graph already has a node '{node['name']}'")
        taken.add(node["name"])
        new_nodes.append(node)
        local[j] = [len(new_nodes) - 1, 0]
    head = layer["heads"][0]
    return [local[head[0]][0], local[head[0]][1] + head[1]]
