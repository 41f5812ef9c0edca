"""Corrections for the defects of MXNet 1.9.1's ONNX exporter on face-recognition graphs.

``mx.onnx.export_model`` mistranslates several constructs the 2018 InsightFace
networks use. Each fix below is a small function applied either to the MXNet
graph before export (``SYMBOL_FIXES``: they act on the parsed symbol JSON and
the parameter dict) or to the ONNX model after it (``ONNX_FIXES``). Every fix
keeps the function the MXNet graph computes; the parity check in
:mod:`insightgluon.export.onnx` proves it for each export.

1. ``FullyConnected`` without an explicit ``flatten`` attribute is exported as
   ``flatten=False`` (MXNet's default is True): Gemm then fails at load.
2. ``BatchNorm`` with ``fix_gamma=True`` (the attribute's default; the legacy
   ``fc1`` layer) is exported with the stored gamma: silently wrong outputs.
3. A per-channel ``PReLU`` slope is exported with shape ``(C,)`` where ONNX
   broadcasting needs ``(C, 1, 1)``: a load error, or silently wrong when C
   equals the feature-map width.
4. ``L2Normalization`` (instance mode) has no translation: the graph is cut
   before it (see :func:`cut_symbol`).
5. Initializers are listed as graph inputs: runtimes cannot fold them. (Also,
   folded scalar arithmetic leaves the original parameter behind, unused.)
6. The opset import is stamped from the installed onnx although the emitted
   nodes are opset-13 style (e.g. ReduceMean with an ``axes`` attribute). The
   exporter's own final graph check uses that newest opset too, so a graph
   with such a node cannot even be exported: :func:`exporter_checks_opset13`.
"""
import contextlib
import logging
from typing import Dict, List, Sequence

import numpy as np

from insightgluon.errors import CheckpointError

logger = logging.getLogger(__name__)

OPSET = 13

# Names insightface's ArcFaceONNX looks for among the first eight graph nodes to
# decide that the graph normalises raw pixels itself.
SUB_NODE_NAME = "_minusscalar0"
MUL_NODE_NAME = "_mulscalar0"
_INSIGHTFACE_SCAN = 8


def _is_true(value, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "1")


def fc_flatten_explicit(nodes: List[dict], params: Dict) -> List[str]:
    """Write MXNet's default ``flatten=True`` on every FullyConnected lacking it.

    Returns the names of the nodes changed.
    """
    changed = []
    for node in nodes:
        attrs = node.setdefault("attrs", {})
        if node["op"] == "FullyConnected" and "flatten" not in attrs:
            attrs["flatten"] = "True"
            changed.append(node["name"])
    return changed


def fixed_gamma_to_one(nodes: List[dict], params: Dict) -> List[str]:
    """Replace the gamma of every ``fix_gamma=True`` BatchNorm by ones.

    MXNet ignores the stored gamma of such a layer (uses 1); the exporter does
    not. The attribute is then set to False so both agree. ``params`` is changed
    in place (new arrays; the caller's arrays are not modified).
    """
    import mxnet as mx

    changed = []
    for node in nodes:
        attrs = node.setdefault("attrs", {})
        if node["op"] != "BatchNorm" or not _is_true(attrs.get("fix_gamma"), default=True):
            continue
        gamma_name = nodes[node["inputs"][1][0]]["name"]
        if gamma_name in params:
            params[gamma_name] = mx.nd.ones_like(params[gamma_name])
        attrs["fix_gamma"] = "False"
        changed.append(node["name"])
    return changed


SYMBOL_FIXES = (fc_flatten_explicit, fixed_gamma_to_one)


def apply_symbol_fixes(symbol, params: Dict):
    """Apply :data:`SYMBOL_FIXES`; returns ``(fixed_symbol, fixed_params, log)``.

    ``log`` maps each fix's name to the MXNet nodes it changed.
    """
    import json

    import mxnet as mx

    graph = json.loads(symbol.tojson())
    params = dict(params)
    log = {fix.__name__: fix(graph["nodes"], params) for fix in SYMBOL_FIXES}
    for name, changed in log.items():
        if changed:
            logger.info("%s: %s", name, ", ".join(changed))
    return mx.sym.load_json(json.dumps(graph)), params, log


def prelu_slope_rank(model, ranks: Dict[str, int]) -> List[str]:
    """Reshape per-channel PRelu slopes from ``(C,)`` to ``(C, 1, ..., 1)``.

    ``ranks`` maps an MXNet PReLU node name to the rank of its input (PReLU keeps
    the shape, so this is the rank of its output). A slope on a rank-2 input
    (after a FullyConnected) is already right.
    """
    from onnx import numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    changed = []
    for node in model.graph.node:
        if node.op_type != "PRelu" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        rank = ranks.get(node.name, 0)
        slope = numpy_helper.to_array(inits[node.input[1]])
        if rank <= 2 or slope.ndim != 1 or slope.size == 1:
            continue
        fixed = slope.reshape((slope.size,) + (1,) * (rank - 2))
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(fixed, node.input[1]))
        changed.append(node.name)
    return changed


def drop_initializer_inputs(model, ranks=None) -> List[str]:
    """Remove initializers from ``graph.input`` so runtimes can fold them."""
    names = {init.name for init in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in names]
    dropped = [value.name for value in model.graph.input if value.name in names]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return dropped


def prune_unused_initializers(model, ranks=None) -> List[str]:
    """Drop initializers no node reads.

    The exporter folds scalar arithmetic on a parameter (e.g. ``gamma * 1``)
    into a new initializer and keeps the original, which runtimes then warn about.
    """
    used = {name for node in model.graph.node for name in node.input}
    used.update(value.name for value in model.graph.output)
    kept = [init for init in model.graph.initializer if init.name in used]
    dropped = [init.name for init in model.graph.initializer if init.name not in used]
    if dropped:
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return dropped


def pin_opset(model, ranks=None) -> List[str]:
    """Declare opset 13, the style of node the exporter's translators emit."""
    stamped = []
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version != OPSET:
            stamped.append(f"{entry.version}->{OPSET}")
            entry.version = OPSET
    return stamped


def mark_input_normalisation(model, ranks=None) -> List[str]:
    """Make insightface recognise the in-graph ``(x - 127.5) * 0.0078125``.

    insightface 2.1 feeds raw pixels only when the first eight node names
    include one starting with ``Sub``/``_minus`` and one with ``Mul``/``_mul``;
    otherwise it normalises a second time. The Sub and Mul nodes that consume
    the graph input are moved to the front and renamed. A graph that takes raw
    pixels without such nodes (e.g. a BatchNorm on the input) gets an exact
    no-op pair ``x - 0``, ``x * 1`` under those names, which declares the same.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    input_name = graph.input[0].name
    consumers = [n for n in graph.node if input_name in n.input]
    sub = next((n for n in consumers if n.op_type == "Sub"), None)
    mul = None
    if sub is not None:
        mul = next((n for n in graph.node if n.op_type == "Mul" and sub.output[0] in n.input), None)
    inits = {init.name for init in graph.initializer}
    constant = (sub is not None and mul is not None
                and all(name in inits for name in list(sub.input[1:]) + [n for n in mul.input
                                                                          if n != sub.output[0]]))
    if constant and len(consumers) == 1:
        front = [sub, mul]
        action = [f"{sub.name or 'Sub'}->{SUB_NODE_NAME}", f"{mul.name or 'Mul'}->{MUL_NODE_NAME}"]
        rest = [n for n in graph.node if n is not sub and n is not mul]
        sub.name, mul.name = SUB_NODE_NAME, MUL_NODE_NAME
    else:
        zero, one = f"{SUB_NODE_NAME}_zero", f"{MUL_NODE_NAME}_one"
        graph.initializer.extend([numpy_helper.from_array(np.zeros((1,), np.float32), zero),
                                  numpy_helper.from_array(np.ones((1,), np.float32), one)])
        raw = f"{input_name}_raw"
        front = [helper.make_node("Sub", [input_name, zero], [f"{raw}_sub"], name=SUB_NODE_NAME),
                 helper.make_node("Mul", [f"{raw}_sub", one], [raw], name=MUL_NODE_NAME)]
        rest = list(graph.node)
        for node in rest:
            for i, name in enumerate(node.input):
                if name == input_name:
                    node.input[i] = raw
        action = ["inserted no-op Sub/Mul pair"]
    # The copies must be taken before the repeated field is cleared.
    ordered = [type(n)() for n in front + rest]
    for new, old in zip(ordered, front + rest):
        new.CopyFrom(old)
    del graph.node[:]
    graph.node.extend(ordered)
    return action


ONNX_FIXES = (prelu_slope_rank, drop_initializer_inputs, prune_unused_initializers, pin_opset,
              mark_input_normalisation)


@contextlib.contextmanager
def exporter_checks_opset13():
    """Within this block ``onnx.checker.check_graph`` checks against opset 13.

    ``mx.onnx.export_model`` ends with ``checker.check_graph(graph)`` under the
    installed onnx's newest opset, which rejects the opset-13 nodes it has just
    emitted. The function is swapped only for the duration of the export call;
    the finished model is checked in full afterwards (with :func:`pin_opset`).
    """
    from onnx import checker

    original = checker.check_graph
    context = checker.C.CheckerContext()
    context.ir_version = checker.DEFAULT_CONTEXT.ir_version
    context.opset_imports = {"": OPSET}

    def check_graph(graph, ctx=None, *args, **kwargs):
        return original(graph, context if ctx is None else ctx, *args, **kwargs)

    checker.check_graph = check_graph
    try:
        yield
    finally:
        checker.check_graph = original


def apply_onnx_fixes(model, ranks: Dict[str, int]) -> Dict[str, List[str]]:
    """Apply :data:`ONNX_FIXES` in place; returns what each changed."""
    log = {fix.__name__: fix(model, ranks) for fix in ONNX_FIXES}
    for name, changed in log.items():
        if changed:
            logger.info("%s: %s", name, ", ".join(changed))
    return log


def insightface_normalises_inside(model) -> bool:
    """True if insightface 2.1 would feed this graph raw pixels (its own rule)."""
    names = [node.name for node in model.graph.node[:_INSIGHTFACE_SCAN]]
    return (any(n.startswith(("Sub", "_minus")) for n in names)
            and any(n.startswith(("Mul", "_mul")) for n in names))


def cut_symbol(symbol, layer: str, source: str):
    """The subgraph of ``symbol`` ending at ``layer``, before any L2Normalization.

    Parameters
    ----------
    symbol : mx.sym.Symbol
        A full (training or deployment) graph.
    layer : str
        Output node name, with or without ``_output``.
    source : str
        File name used in error messages.

    Returns
    -------
    (mx.sym.Symbol, str)
        The cut symbol and the name of its output node. If ``layer`` is an
        ``L2Normalization``, its input is returned instead (the embedding
        before normalisation; cosine similarity is unchanged).
    """
    internals = symbol.get_internals()
    names = list(internals.list_outputs())
    wanted = layer if layer.endswith("_output") else f"{layer}_output"
    if wanted not in names:
        near = [n for n in names if layer in n][:8]
        raise CheckpointError(f"{source}: no layer '{layer}' in the graph"
                              + (f"; similar: {', '.join(near)}" if near else ""))
    out = internals[wanted]
    import json

    nodes = json.loads(out.tojson())["nodes"]
    while nodes[-1]["op"] == "L2Normalization":
        inner = nodes[nodes[-1]["inputs"][0][0]]["name"]
        logger.info("%s: exporting '%s', the input of L2Normalization '%s'",
                    source, inner, nodes[-1]["name"])
        out = internals[f"{inner}_output"]
        nodes = json.loads(out.tojson())["nodes"]
    inner_l2 = [n["name"] for n in nodes if n["op"] == "L2Normalization"]
    if inner_l2:
        raise CheckpointError(f"{source}: L2Normalization '{inner_l2[0]}' inside the exported "
                              "subgraph has no ONNX translation; choose an earlier --layer")
    return out, nodes[-1]["name"]


def prelu_ranks(symbol, input_name: str, input_shape: Sequence[int]) -> Dict[str, int]:
    """Rank of the tensor each PReLU node sees, from MXNet shape inference."""
    import json

    nodes = json.loads(symbol.tojson())["nodes"]
    prelus = [n["name"] for n in nodes
              if n["op"] == "LeakyReLU" and n.get("attrs", {}).get("act_type") == "prelu"]
    if not prelus:
        return {}
    internals = symbol.get_internals()
    outputs = {f"{name}_output": name for name in prelus}
    group = [internals[key] for key in outputs]
    import mxnet as mx

    _, shapes, _ = mx.sym.Group(group).infer_shape(**{input_name: tuple(input_shape)})
    return {name: len(shape) for name, shape in zip(outputs.values(), shapes)}
