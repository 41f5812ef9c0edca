"""NASNet-A Large (``n1``): 2018 Gluon counter names, graph details, options, bad checkpoints.

The output on 2018 arrays is checked by ``test_networks_zoo.py`` (record ``n1``); here the
graph is inspected symbolically and checkpoints are small stand-ins whose arrays have the
2018 names and every known dimension (the deferred input-channel dimensions are 1), which is
all ``load_legacy_params`` matches on.
"""
import json
from collections import Counter

import mxnet as mx
import numpy as np
import pytest

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.networks.legacy import counter_indices
from insightgluon.networks.nasnet import COUNTED, NASNet

# Operator counts of the 2018 graph cut at fc1.
OPS_2018 = {"Convolution": 488, "BatchNorm": 266, "Activation": 263, "elemwise_add": 110,
            "Pooling": 78, "Concat": 26, "Pad": 12, "slice": 12, "_minus_scalar": 1,
            "_mul_scalar": 1, "Dropout": 1, "FullyConnected": 1}
# (operator, its 2018 name, output shape for one 112x112 image)
LANDMARKS = [("conv0_fwd", (1, 96, 110, 110)), ("cellstem00_concat0", (1, 168, 55, 55)),
             ("cellstem10_concat1", (1, 336, 28, 28)), ("firstcell0_concat1", (1, 1008, 28, 28)),
             ("maxpoolpad1_slice0", (1, 336, 14, 14)),
             ("branchseparablesreduction4_slice0", (1, 336, 14, 14)),
             ("reductioncell00_concat0", (1, 1344, 14, 14)),
             ("reductioncell10_concat0", (1, 2688, 7, 7)), ("firstcell2_concat1", (1, 4032, 7, 7)),
             ("normalcell14__plus4", (1, 672, 7, 7)), ("normalcell14_concat0", (1, 4032, 7, 7)),
             ("dropout1", (1, 4032, 7, 7)), ("fc1", (1, 8))]


def _names(net):
    return list(net.collect_params().keys())


@pytest.fixture(scope="module")
def graph():
    sym = get_network("n1", emb_size=8)(mx.sym.var("data"))
    return sym, json.loads(sym.tojson())["nodes"]


def test_names_come_from_the_structure_not_from_the_process():
    first = _names(get_network("n1", emb_size=8))
    # Layers built outside a name scope advance Gluon's process-wide counters past 0.
    prefixes = [layer.prefix for _ in range(2)
                for layer in (mx.gluon.nn.Conv2D(4, 1), mx.gluon.nn.BatchNorm())]
    assert prefixes[2:] != ["conv0_", "batchnorm0_"] and len(set(prefixes)) == 4
    second = _names(get_network("n1", emb_size=8))
    assert first == second
    # A 2018 train_softmax.py process built nothing before the network: fresh counters.
    assert first[:5] == ["conv0_weight", "batchnorm0_gamma", "batchnorm0_beta",
                         "batchnorm0_running_mean", "batchnorm0_running_var"]
    counted = {kind: set(found) for kind, found in counter_indices(first, COUNTED).items()}
    assert counted == {"conv": set(range(488)), "batchnorm": set(range(264))}
    assert [n for n in first if not n.startswith(("conv", "batchnorm"))] == [
        "bn1_gamma", "bn1_beta", "bn1_moving_mean", "bn1_moving_var", "pre_fc1_weight",
        "pre_fc1_bias", "fc1_gamma", "fc1_beta", "fc1_moving_mean", "fc1_moving_var"]


def test_operators_names_and_shapes_are_the_2018_ones(graph):
    sym, nodes = graph
    # channel_concat's plain-layout reshapes (the 168-channel pieces) compute nothing
    ops = Counter(n["op"] for n in nodes if n["op"] != "null")
    plain = Counter(n["op"] for n in nodes if n["op"] == "Reshape" and "_concat" in n["name"])
    ops.subtract(plain + Counter(reshape_like=ops["reshape_like"]))  # each concat stays one Concat
    assert {op: k for op, k in ops.items() if k} == OPS_2018
    internals = sym.get_internals()
    for name, shape in LANDMARKS:
        _, (out,), _ = internals[f"{name}_output"].infer_shape(data=(1, 3, 112, 112))
        assert out == shape, name


def test_layer_attributes_are_the_2018_ones(graph):
    _, nodes = graph
    bns = {n["name"]: n["attrs"] for n in nodes if n["op"] == "BatchNorm"}
    head = {"bn1": ("2e-05", "0.9", "False"), "fc1": ("2e-05", "0.9", "True")}
    for name, attrs in bns.items():
        assert (attrs["eps"], attrs["momentum"], attrs["fix_gamma"]) == head.get(
            name, ("0.001", "0.1", "False")), name
    pools = [n["attrs"] for n in nodes if n["op"] == "Pooling"]
    assert {p["pooling_convention"] for p in pools} == {"valid"}
    assert all(p.get("count_include_pad") == "True" for p in pools if p["pool_type"] == "avg")
    pads = Counter(n["attrs"]["pad_width"] for n in nodes if n["op"] == "Pad")
    assert pads == {"(0, 0, 0, 0, 1, 0, 1, 0)": 8, "(0, 0, 0, 0, 0, 1, 0, 1)": 4}
    assert {n["attrs"]["act_type"] for n in nodes if n["op"] == "Activation"} == {"relu"}


def test_options_the_2018_builder_did_not_read_are_ignored():
    plain = get_network("n1", emb_size=8)
    other = get_network("n1", emb_size=8, version_se=1, version_input=0, version_output="GDC",
                        version_unit=1, version_act="relu", bn_mom=0.5)
    assert _names(other) == _names(plain)
    assert [p.shape for p in other.collect_params().values()] == [
        p.shape for p in plain.collect_params().values()]
    with pytest.raises(ConfigError, match="emb_size"):
        get_network("n1", emb_size=0)
    with pytest.raises(ConfigError, match="version_multiplier"):
        get_network("n1", version_multiplier=0)


def test_width_multiplier_scales_every_cell_and_keeps_the_names():
    """Not a 2018 option: the stem and cell widths scaled to even channel counts, the names kept."""
    plain, thin = get_network("n1", emb_size=8), get_network("n1", emb_size=8, version_multiplier=0.25)
    assert _names(thin) == _names(plain)
    shapes = {name: p.shape for name, p in thin.collect_params().items()}
    assert shapes["conv0_weight"][0] == 24  # 96 / 4
    assert shapes["pre_fc1_weight"][1] in (0, 6 * 168 * 7 * 7)  # the last cells: 672 / 4 wide, six branches
    out = thin(mx.sym.var("data")).infer_shape(data=(1, 3, 112, 112))[1]
    assert out == [(1, 8)]


def test_every_cell_parameter_is_decayed_as_in_2018():
    params = get_network("n1", emb_size=8).collect_params()
    for name in ("conv0_weight", "batchnorm0_gamma", "batchnorm0_beta", "batchnorm263_beta"):
        assert (params[name].lr_mult, params[name].wd_mult) == (1.0, 1.0), name
    for name in ("bn1_beta", "pre_fc1_bias", "fc1_beta"):
        assert (params[name].lr_mult, params[name].wd_mult) == (1.0, 0.0), name
    assert params["fc1_gamma"].grad_req == "null"


def test_runs_hybridized_and_not():
    net = get_network("n1", emb_size=8, version_multiplier=0.25)  # every cell, at a quarter of the width
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(0).uniform(0, 255, (1, 3, 112, 112)))
    eager = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    assert eager.shape == (1, 8) and np.isfinite(eager).all()
    np.testing.assert_allclose(net(x).asnumpy(), eager, rtol=1e-4, atol=1e-4)


def _checkpoint(net, path, rename=None, drop=()):
    """Save ``net``'s parameters as a 2018 ``.params`` (``arg:``/``aux:``), each array filled with
    its own index; return ``{saved name: index}``."""
    saved, index = {}, {}
    for i, (name, param) in enumerate(net.collect_params().items()):
        if name in drop:
            continue
        key = (rename or (lambda n: n))(name)
        kind = "aux" if name.endswith(("_mean", "_var")) else "arg"
        saved[f"{kind}:{key}"] = mx.nd.full(tuple(d or 1 for d in param.shape), float(i))
        index[key] = i
    mx.nd.save(str(path), saved)
    return index


def _shifted(name):
    # The same layers numbered by a process that had built other layers first (conv0 and
    # batchnorm0 .. batchnorm244 taken): the numbering of the graph exported next to others.
    match = COUNTED.match(name)
    if match is None:
        return name
    hint, number, rest = match.groups()
    return f"{hint}{int(number) + {'conv': 1, 'batchnorm': 245}[hint]}_{rest}"


def test_checkpoint_with_shifted_counters_loads_into_the_same_layers(tmp_path):
    path = tmp_path / "model-0000.params"
    index = _checkpoint(get_network("n1", emb_size=8), path, rename=_shifted)
    assert "conv1_weight" in index and "batchnorm508_running_var" in index
    assert "conv0_weight" not in index and "batchnorm0_gamma" not in index
    net = get_network("n1", emb_size=8)
    assert load_legacy_params(net, str(path)) == []
    for name, param in net.collect_params().items():
        assert float(param.data().asnumpy().ravel()[0]) == index[_shifted(name)], name


def test_renumbering_leaves_our_names_alone():
    net = NASNet(emb_size=8)
    saved = {name: None for name in _names(net)}
    assert net.convert_legacy_params(saved) is saved


@pytest.mark.parametrize("case, message", [
    ("other_network", r"missing 1544 network parameters: conv0_weight, batchnorm0_gamma"),
    ("missing_bn", r"missing 4 network parameters: batchnorm55_gamma, batchnorm55_beta"),
    ("missing_bn_shifted", r"missing 980 network parameters: batchnorm0_gamma"),
    ("other_emb_size",
     r"parameter pre_fc1_weight has shape \(16, 1\), the network expects \(8, 0\)"),
])
def test_bad_checkpoints_fail_with_one_line(tmp_path, case, message):
    path = tmp_path / "model-0000.params"
    bn55 = [f"batchnorm55_{p}" for p in ("gamma", "beta", "running_mean", "running_var")]
    if case == "other_network":
        _checkpoint(get_network("m1", emb_size=8), path)
    elif case == "missing_bn":
        _checkpoint(get_network("n1", emb_size=8), path, drop=bn55)
    elif case == "missing_bn_shifted":
        # With a layer missing the BN numbers are no longer ours shifted: they are not renamed.
        _checkpoint(get_network("n1", emb_size=8), path, rename=_shifted, drop=bn55)
    else:
        _checkpoint(get_network("n1", emb_size=16), path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_legacy_params(get_network("n1", emb_size=8), str(path))
    assert "\n" not in str(err.value)
