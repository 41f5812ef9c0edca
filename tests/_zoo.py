"""Compact records of the 2018 network graphs, for parity tests that need no 2018 file.

A record (``tests/legacy_zoo/TAG.json.gz``) holds what a 2018 checkpoint of one
network looks like and what its graph computes:

* ``network`` and ``options``: the ``get_network`` call that must build that graph;
* ``input``: the input shape (N, 3, H, W);
* ``params``: every ``arg:``/``aux:`` array of the graph, name and shape, in graph order;
* ``multipliers``: the ``__lr_mult__``/``__wd_mult__`` the graph declares per argument;
* ``inits``: the ``__init__`` the graph declares per argument (it overrides the global initializer);
* ``fixed_gamma``: the ``gamma`` of every ``BatchNorm(fix_gamma=True)``;
* ``prelu``: the slope of every ``LeakyReLU(act_type='prelu')``;
* ``fc1``: the graph's output on :func:`seeded_params` and :func:`seeded_input`; or, for the large graphs,
  ``probe``: the same at a smaller input that runs every layer (``input``, the ``params`` whose shape
  changes with it, ``fc1``), so that the numeric test stays small while names and shapes are the full ones.

Parameters are drawn from a seeded generator in record order, so the test
regenerates exactly the arrays the record's ``fc1`` was computed from.

Recording (development only; the graph comes from the 2018 builder, never committed)::

    .venv/bin/python tests/_zoo.py SYMBOL.json[.gz] TAG NETWORK [--options JSON] [--input N,3,H,W] [--output NODE]
    .venv/bin/python tests/_zoo.py --probe N,3,H,W SYMBOL.json[.gz] TAG   # an existing record, made smaller

``--probe`` first checks that the graph reproduces the committed record (names, shapes, attributes and
``fc1`` at the record's input), then replaces ``fc1`` by a ``probe`` at the given input.
"""
import argparse
import gzip
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDS = os.path.join(HERE, "legacy_zoo")
SEED = 2018


def record_paths():
    """Every committed record, sorted by tag."""
    return sorted(os.path.join(RECORDS, f) for f in os.listdir(RECORDS) if f.endswith(".json.gz"))


def record_path(tag):
    return os.path.join(RECORDS, f"{tag}.json.gz")


def expected_multipliers(record):
    """``{argument: (lr_mult, wd_mult)}`` the 2018 Module optimiser used: declared, else MXNet's rule."""
    args = [key.split(":", 1)[1] for key, _ in record["params"] if key.startswith("arg:")]
    default = {True: (1.0, 1.0), False: (1.0, 0.0)}
    return {name: tuple(record["multipliers"].get(name, default[name.endswith(("_weight", "_gamma"))]))
            for name in args}


def trainer_multipliers(trainer):
    """``{name: (lr_mult, wd_mult)}`` exactly as a Gluon Trainer's optimizer applies them to the
    parameters it updates (not statistics nor fixed gammas)."""
    opt = trainer._optimizer
    base_lr = opt.learning_rate
    out = {}
    for index, param in opt.param_dict.items():
        if param.grad_req == "null":
            continue
        lr = opt._get_lrs([index])[0] / base_lr
        wd = opt._get_wds([index])[0] / opt.wd if opt.wd else param.wd_mult
        out[param.name] = (round(lr, 6), round(wd, 6))
    return out


def load_record(path):
    with gzip.open(path, "rt") as handle:
        return json.load(handle)


def numeric(record):
    """What the numeric parity test runs: ``record`` itself, or its probe at a smaller input
    (the same names, drawn in the same order, with the shapes of that input)."""
    probe = record.get("probe")
    if probe is None:
        return record
    changed = probe["params"]
    return dict(record, input=probe["input"], fc1=probe["fc1"],
                params=[[key, changed.get(key, shape)] for key, shape in record["params"]])


class _Draws:
    """The last record's arrays and the generator's state before each, so that the next record
    whose first parameters are the same (the same body under another head, e.g. the 14 i4 heads)
    draws only the rest. The values are those of a fresh draw: the generator is sequential."""

    def __init__(self):
        self.specs, self.arrays, self.states = [], [], []

    def keep(self, count):
        """Forget everything after the first ``count`` arrays (freeing them)."""
        del self.specs[count:], self.arrays[count:], self.states[count + 1 if count else 0:]


_DRAWS = _Draws()


def _spec(record, key, shape):
    """What decides a parameter's draw: its name, shape and distribution."""
    name = key.split(":", 1)[1]
    if name.endswith(("moving_var", "running_var")):
        kind = ("uniform", 0.5, 1.5)
    elif name.endswith(("moving_mean", "running_mean")):
        kind = ("normal", 0.1)
    elif name.endswith("gamma"):
        # PReLU slopes small, BatchNorm scales around 1
        kind = ("uniform", 0.1, 0.3) if name in record["prelu"] else ("uniform", 0.5, 1.5)
    elif name.endswith(("beta", "bias")):
        kind = ("normal", 0.1)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        kind = ("normal", float(np.sqrt(2.0 / max(fan_in, 1))))
    return key, tuple(shape), kind


def seeded_params(record):
    """``{"arg:NAME"|"aux:NAME": NDArray}`` drawn in record order (BN statistics kept sane,
    under MXNet's ``moving_*`` or Gluon's ``running_*`` names). The arrays are shared with the
    next call's where it starts with the same parameters: read them, do not write them."""
    import mxnet as mx

    specs = [_spec(record, key, shape) for key, shape in record["params"]]
    common = 0
    while common < min(len(specs), len(_DRAWS.specs)) and specs[common] == _DRAWS.specs[common]:
        common += 1
    _DRAWS.keep(common)
    rng = np.random.default_rng(SEED)
    if common:
        rng.bit_generator.state = _DRAWS.states[common]
    else:
        _DRAWS.states.append(rng.bit_generator.state)
    for spec in specs[common:]:
        _, shape, kind = spec
        value = rng.uniform(kind[1], kind[2], shape) if kind[0] == "uniform" else rng.normal(0, kind[1], shape)
        # zero-copy: an x1 graph has 23,000 arrays, and copying each into MXNet took seconds
        _DRAWS.arrays.append(mx.nd.from_numpy(np.ascontiguousarray(value, dtype=np.float32), zero_copy=True))
        _DRAWS.specs.append(spec)
        _DRAWS.states.append(rng.bit_generator.state)
    return {spec[0]: array for spec, array in zip(specs, _DRAWS.arrays)}


class _Shaped:
    """Stands in for a checkpoint array where a layout conversion reads only its shape."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def stand_ins(shapes):
    """``{name: array-like}`` for a layout conversion without allocating a full-size checkpoint:
    real (tiny) arrays for the 2018 per-channel kernels that Xception's conversion stacks, objects
    with a ``shape`` for everything else."""
    import mxnet as mx

    return {name: mx.nd.zeros(shape) if "_depthwise_kernel_" in name else _Shaped(shape)
            for name, shape in shapes.items()}


def seeded_input(record):
    import mxnet as mx

    rng = np.random.default_rng(SEED + 1)
    return mx.nd.array(rng.uniform(0, 255, record["input"]).astype(np.float32))


def load_symbol(path):
    import mxnet as mx

    if path.endswith(".gz"):
        with gzip.open(path, "rt") as handle:
            return mx.sym.load_json(handle.read())
    return mx.sym.load(path)


def describe(sym, input_shape):
    """Names, shapes and declared attributes of a graph (everything but ``fc1``)."""
    arg_shapes, _, aux_shapes = sym.infer_shape(data=tuple(input_shape))
    attrs = sym.attr_dict()
    params = [["arg:" + n, list(s)] for n, s in zip(sym.list_arguments(), arg_shapes) if n != "data"]
    params += [["aux:" + n, list(s)] for n, s in zip(sym.list_auxiliary_states(), aux_shapes)]
    multipliers, inits = {}, {}
    for name in sym.list_arguments():
        declared = attrs.get(name, {})
        if "__lr_mult__" in declared or "__wd_mult__" in declared:
            multipliers[name] = [float(declared.get("__lr_mult__", 1.0)), float(declared.get("__wd_mult__", 1.0))]
        if "__init__" in declared and name != "data":
            inits[name] = declared["__init__"]
    nodes = json.loads(sym.tojson())["nodes"]
    fixed_gamma, prelu = [], []
    for node in nodes:
        node_attrs = node.get("attrs", node.get("param", {})) or {}
        if node["op"] == "BatchNorm" and node_attrs.get("fix_gamma", "True") == "True":
            fixed_gamma.append(nodes[node["inputs"][1][0]]["name"])
        if node["op"] == "LeakyReLU" and node_attrs.get("act_type") == "prelu":
            prelu.append(nodes[node["inputs"][1][0]]["name"])
    return dict(input=list(input_shape), params=params, multipliers=multipliers, inits=inits,
                fixed_gamma=sorted(fixed_gamma), prelu=sorted(prelu))


def record(symbol_file, tag, network, options=None, input_shape=(1, 3, 112, 112), source="",
           output="fc1_output"):
    """Describe the graph in ``symbol_file`` cut at ``output`` (the embedding: ``fc1``, or
    ``fc1_relu`` for the D heads), run it on seeded arrays and write ``TAG.json.gz``."""
    sym = _graph(symbol_file, output)
    rec = dict(network=network, options=options or {}, source=source, **describe(sym, input_shape))
    rec["fc1"] = run_graph(sym, rec)
    return _write(tag, rec)


def _graph(symbol_file, output):
    """The graph in ``symbol_file`` cut at ``output`` (where it has that node)."""
    sym = load_symbol(symbol_file)
    if output in sym.get_internals().list_outputs():
        sym = sym.get_internals()[output]
    return sym


def run_graph(sym, rec):
    """The graph's output, flattened, on the record's seeded arrays and input."""
    import mxnet as mx

    block = mx.gluon.SymbolBlock(sym, mx.sym.var("data", dtype="float32"))
    params = seeded_params(rec)
    block.collect_params().load_dict({k.split(":", 1)[1]: v for k, v in params.items()})
    return [float(v) for v in block(seeded_input(rec)).asnumpy().ravel()]


def probe(symbol_file, tag, input_shape, output="fc1_output"):
    """Replace the committed record's ``fc1`` by one at ``input_shape``, after checking that the
    graph in ``symbol_file`` is the one the record describes."""
    path = record_path(tag)
    rec = load_record(path)
    sym = _graph(symbol_file, output)
    described = describe(sym, rec["input"])
    differ = [key for key, value in described.items() if rec[key] != value]
    if differ:
        raise SystemExit(f"{symbol_file} is not the graph of {path}: {differ} differ")
    committed = numeric(rec)  # (a record probed before: its probe)
    got = np.asarray(run_graph(sym, committed), dtype=np.float32)
    want = np.asarray(committed["fc1"], dtype=np.float32)
    if got.shape != want.shape or np.abs(got - want).max() > 1e-5 * np.abs(want).max():
        raise SystemExit(f"{symbol_file} does not compute the fc1 of {path}")
    small = describe(sym, input_shape)
    changed = {key: shape for (key, shape), (_, old) in zip(small["params"], rec["params"]) if shape != old}
    rec.pop("fc1", None)
    rec["probe"] = dict(input=list(input_shape), params=changed, fc1=[])
    rec["probe"]["fc1"] = run_graph(sym, numeric(rec))
    return _write(tag, rec)


def _write(tag, rec):
    path = record_path(tag)
    with gzip.open(path, "wt") as handle:
        json.dump(rec, handle, separators=(",", ":"))
    return path


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--probe"]:
        shape, symbol, tag = argv[1:4]
        sys.stdout.write(probe(symbol, tag, tuple(int(v) for v in shape.split(",")), *argv[4:5]) + "\n")
        return
    parser = argparse.ArgumentParser(description="record a 2018 graph as a parity-test record")
    parser.add_argument("symbol")
    parser.add_argument("tag")
    parser.add_argument("network")
    parser.add_argument("--options", default="{}", help="get_network keyword arguments as JSON")
    parser.add_argument("--input", default="1,3,112,112")
    parser.add_argument("--source", default="", help="which 2018 builder call made the graph")
    parser.add_argument("--output", default="fc1_output", help="the embedding node (fc1_relu_output: D heads)")
    args = parser.parse_args(argv)
    path = record(args.symbol, args.tag, args.network, json.loads(args.options),
                  tuple(int(v) for v in args.input.split(",")), args.source, args.output)
    sys.stdout.write(path + "\n")


if __name__ == "__main__":
    main()
