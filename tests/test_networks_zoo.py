"""Every recorded 2018 graph (``tests/legacy_zoo/*.json.gz``, see ``_zoo.py``) is built exactly.

For each record: the network's parameters are the 2018 names and shapes at full size, found by shape
inference on its symbol (nothing full-size is allocated); it declares the 2018 multipliers and
initialisers; a checkpoint saved under those names loads with nothing missing or left over but
``fc7*``, and the output equals the 2018 graph's on the same arrays, imperative and hybridized (the
large graphs at the smaller input of their probe, a depth variant by its sibling: see ``SAME_CODE_AS``);
PReLU is the fast one wherever the 2018 graph has ``prelu``.
"""
import os

import mxnet as mx
import numpy as np
import pytest

from _zoo import (expected_multipliers, load_record, numeric, record_paths, seeded_input, seeded_params,
                  stand_ins)
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.nn import PReLU

RECORDS = {os.path.basename(p)[:-len(".json.gz")]: p for p in record_paths()}
# Depths of one family differ from a sibling's only in the numbers of the family's table (units per
# stage, widths, groups, growth), and every one of those numbers shows in the names and shapes checked
# at full size below; the code they run is the sibling's, whose numerics are checked. So their own
# numerics (a full-size 2018 checkpoint each, 50-144 M parameters) are not run again.
SAME_CODE_AS = {"p92": "p68", "p131": "p107", "d161": "d121", "d201": "d169", "r100": "r50",
                "s36": "s20", "s60": "s20", "s64": "s20", "s104": "s20"}
# A checkpoint file read into the network holds its parameters twice at least: n1 and p107 have 86-90 M
# even at their probe's 32x32 input, i4 58 M; x1_input2 and i4_input0 72-74 M at 112x112 (no probe).
LARGE = {"n1", "p107", "i4", "x1_input2", "i4_input0"}
NUMERIC = [pytest.param(tag, marks=pytest.mark.budget(
    reason="loads a 2018 checkpoint of a 58-90 M-parameter network", memory_gib=1.75)) if tag in LARGE else tag
    for tag in sorted(RECORDS) if tag not in SAME_CODE_AS]


def _build(rec):
    return get_network(rec["network"], **rec["options"])


def _max_rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def test_depth_variants_share_their_siblings_code_and_options():
    for tag, sibling in SAME_CODE_AS.items():
        rec, other = load_record(RECORDS[tag]), load_record(RECORDS[sibling])
        assert rec["network"].rstrip("0123456789") == other["network"].rstrip("0123456789")
        assert {k: v for k, v in rec["options"].items() if k != "emb_size"} == \
            {k: v for k, v in other["options"].items() if k != "emb_size"}
        assert type(_build(rec)) is type(_build(other))


def test_every_family_has_records():
    families = {load_record(p)["network"].rstrip("0123456789") for p in RECORDS.values()}
    assert {"r", "y", "m", "p", "d", "i", "x", "n", "s"} <= families, sorted(families)


@pytest.mark.parametrize("tag", NUMERIC)
def test_2018_checkpoint_loads_and_gives_the_same_fc1(tmp_path, tag):
    rec = numeric(load_record(RECORDS[tag]))  # the large graphs at a small input (their probe)
    params = seeded_params(rec)
    params["arg:fc7_weight"] = mx.nd.ones((3, len(rec["fc1"]) // rec["input"][0]))  # a 2018 file has fc7 too
    path = str(tmp_path / "legacy-0000.params")
    mx.nd.save(path, params)
    del params
    want = np.asarray(rec["fc1"], dtype=np.float32)
    x = seeded_input(rec)
    net = _build(rec)
    assert load_legacy_params(net, path) == []
    for hybridize in (False, True):  # the same loaded parameters, imperative and then as one graph
        if hybridize:
            net.hybridize(static_alloc=True, static_shape=True)
        got = net(x).asnumpy().ravel()
        assert got.shape == want.shape
        assert _max_rel(got, want) < 1e-4, (hybridize, _max_rel(got, want))


@pytest.mark.parametrize("tag", sorted(RECORDS))
def test_parameter_names_shapes_and_prelu_are_the_2018_ones(tag):
    """Names and shapes by shape inference on the network's symbol: nothing full-size is allocated."""
    rec = load_record(RECORDS[tag])
    net = _build(rec)
    out = net(mx.sym.var("data"))
    arg_shapes, _, aux_shapes = out.infer_shape(data=tuple(rec["input"]))
    inferred = dict(zip(out.list_arguments(), arg_shapes))
    inferred.update(zip(out.list_auxiliary_states(), aux_shapes))
    inferred.pop("data")
    ours = {name: tuple(inferred[name]) for name in net.collect_params().keys() if name in inferred}
    assert sorted(set(net.collect_params().keys()) - set(inferred)) == []  # every parameter is used
    theirs = {key.split(":", 1)[1]: tuple(shape) for key, shape in rec["params"]}
    converted = getattr(net, "convert_legacy_params", None)
    if converted is not None:  # families whose 2018 layout we store differently (Xception)
        theirs = {k: tuple(v.shape) for k, v in converted(stand_ins(theirs)).items()}
    assert sorted(set(ours) - set(theirs)) == [] and sorted(set(theirs) - set(ours)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    fast = sorted(block.gamma.name for block in _blocks(net) if isinstance(block, PReLU))
    assert fast == rec["prelu"]


@pytest.mark.parametrize("tag", sorted(RECORDS))
def test_multipliers_and_initializers_are_the_2018_ones(tag):
    """What the 2018 Module optimiser and initializer did per parameter: the graph's declared
    ``__lr_mult__``/``__wd_mult__``, else decay only ``*_weight``/``*_gamma``; declared ``__init__``."""
    rec = load_record(RECORDS[tag])
    params = _build(rec).collect_params()
    want = expected_multipliers(rec)
    # Trained parameters only; one our layout merges (Xception's stacked kernels) has no record
    # entry of its own and takes what its per-channel parts took: MXNet's rule (none declares more).
    got = {name: (p.lr_mult, p.wd_mult) for name, p in params.items() if p.grad_req != "null"}
    rule = {True: (1.0, 1.0), False: (1.0, 0.0)}
    assert got == {name: want.get(name, rule[name.endswith(("_weight", "_gamma"))]) for name in got}
    assert [name for name in rec["fixed_gamma"] if name in want and params[name].grad_req != "null"] == []
    for name, declared in rec["inits"].items():
        if name in params.keys():
            assert _init_key(params[name].init) == _init_key(declared), (name, params[name].init, declared)


def _init_key(init):
    """A comparable form of an initializer (instance, registry string or dumped JSON)."""
    import json

    if init is None:
        return None
    if not isinstance(init, str):
        init = init.dumps()
    kind, kwargs = json.loads(init) if init.startswith("[") else (init, {})
    kind = {"zero": "zeros", "one": "ones"}.get(kind.lower(), kind.lower())
    return kind, tuple(sorted((k, float(v)) for k, v in kwargs.items()))


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)
