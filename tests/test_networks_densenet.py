"""DenseNet (``d121`` ... ``d201``): the 2018 fdensenet graph, its options and bad checkpoints.

Parity on every recorded option lives in ``test_networks_zoo.py``; this file checks what
a record cannot show: the operators and their attributes, the options the 2018 builder
ignored or could not build, head ``D`` (whose output is past ``fc1``), dropout in training,
and the one-line errors for checkpoints of another variant or option.
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from _zoo import RECORDS, load_record, seeded_input, seeded_params
from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.nn import Dropout
from insightgluon.nn import PReLU


def _record(tag):
    return load_record(os.path.join(RECORDS, f"{tag}.json.gz"))


def _graph(net):
    """Nodes of the symbolic graph (no initialisation, no forward pass)."""
    return json.loads(net(mx.sym.var("data")).tojson())["nodes"]


def _shapes(net):
    sym = net(mx.sym.var("data"))
    shapes, _, _ = sym.infer_shape(data=(1, 3, 112, 112))
    return dict(zip(sym.list_arguments(), shapes))


def _checkpoint(tmp_path, params, name="other"):
    path = str(tmp_path / f"{name}-0000.params")
    mx.nd.save(path, params)
    return path


def _zeros(tag, **replace):
    """A checkpoint with the names and shapes of record ``tag`` (``replace``: name -> shape)."""
    shapes = {key: tuple(shape) for key, shape in _record(tag)["params"]}
    shapes.update({f"arg:{name}": shape for name, shape in replace.items()})
    return {key: mx.nd.zeros(shape) for key, shape in shapes.items()}


def test_graph_has_the_2018_operators_and_attributes():
    nodes = [n for n in _graph(get_network("d121")) if n["op"] != "null"]
    by_name = {n["name"]: n for n in nodes}
    dropout = [float(n["attrs"]["p"]) for n in nodes if n["op"] == "Dropout"]
    assert dropout.count(0.2) == 2 * 58 + 3 and dropout.count(0.4) == 1 and len(dropout) == 120
    assert sum(n["op"] == "Concat" for n in nodes) == 58
    assert by_name["DBstage1_unit1_relu1"]["attrs"]["act_type"] == "relu"
    assert by_name["TBstage3_pool3"]["attrs"]["pool_type"] == "avg"
    for name in ("DBstage1_unit1_dp1", "DBstage4_unit16_dp2", "TBstage2_dp1", "DBstage4_concat16",
                 "head_plus", "pre_fc1", "fc1"):
        assert name in by_name, name
    body_acts = [n["attrs"]["act_type"] for n in nodes if n["name"].startswith(("DBstage", "TBstage"))
                 and n["op"] in ("Activation", "LeakyReLU")]
    assert body_acts == ["relu"] * (2 * 58 + 3)


def test_prelu_only_where_2018_had_it():
    net = get_network("d121", version_output="C")
    fast = sorted(b.gamma.name for b in _blocks(net) if isinstance(b, PReLU))
    assert fast == ["head_relu1_gamma", "relu0_gamma", "relu1_gamma"]


def test_stem_width_and_the_counted_transition_width():
    # d161: 2k = 96 but the IR stem is capped at 64; transitions halve the count from 96.
    default = _shapes(get_network("d161"))
    assert default["conv0_weight"] == (64, 3, 3, 3)
    assert default["TBstage1_conv1_weight"] == (192, 64 + 6 * 48, 1, 1)
    seven = _shapes(get_network("d161", version_input=0))
    assert seven["conv0_weight"] == (96, 3, 7, 7)
    assert seven["TBstage1_conv1_weight"] == (192, 96 + 6 * 48, 1, 1)
    assert not any(name.startswith("head_") for name in seven)


def test_version_input_above_one_is_the_default_stem():
    assert _shapes(get_network("d121", version_input=3)) == _shapes(get_network("d121"))


@pytest.mark.parametrize("option, value", [("version_act", "relu"), ("version_multiplier", 0.25),
                                           ("version_unit", 1), ("version_se", 1)])
def test_options_the_2018_builder_did_not_read_are_ignored(option, value):
    assert _shapes(get_network("d121", **{option: value})) == _shapes(get_network("d121"))


@pytest.mark.parametrize("option, options", [
    ("version_output", dict(version_output="K")), ("version_output", dict(version_output="EX")),
    ("version_input", dict(version_input=-1)), ("version_input", dict(version_input="1")),
    ("emb_size", dict(emb_size=0)), ("version_output", dict(version_output="GDC", version_input=0))])
def test_options_the_2018_builder_could_not_build_fail_with_one_line(option, options):
    with pytest.raises(ConfigError, match=option) as err:
        get_network("d121", **options)
    assert "\n" not in str(err.value)


def test_the_later_2018_heads():
    """GDC keeps 512 groups on d121's 1024 channels and fails to bind on d169's 1664 in 2018
    (one group per channel here); GNAP takes a width other than 512 only above 512 in 2018
    (here a 1x1 map to 512 below); Z is bn1 on the 7x7 map, flattened."""
    gdc = _shapes(get_network("d121", emb_size=8, version_output="GDC"))
    assert gdc["conv_6dw7_7_conv2d_weight"] == (512, 2, 7, 7) and gdc["pre_fc1_weight"] == (8, 512)
    assert _shapes(get_network("d169", emb_size=8, version_output="GDC"))[
        "conv_6dw7_7_conv2d_weight"] == (1664, 1, 7, 7)
    assert _shapes(get_network("d121", emb_size=1024, version_output="GNAP"))[
        "convx_weight"] == (1024, 1024, 1, 1)
    assert _shapes(get_network("d121", emb_size=8, version_output="GNAP"))[
        "convx_weight"] == (512, 1024, 1, 1)
    sym = get_network("d121", version_output="Z")(mx.sym.var("data"))
    assert sym.infer_shape(data=(1, 3, 112, 112))[1] == [(1, 1024 * 7 * 7)]


def test_head_d_is_head_c_then_prelu_on_2018_values(tmp_path):
    """The C record's ``fc1`` is what the 2018 D graph feeds its ``fc1_relu`` PReLU."""
    rec = _record("d121_outputC")
    params = seeded_params(rec)
    slope = np.random.RandomState(1).uniform(0.1, 0.3, 512).astype(np.float32)
    params["arg:fc1_relu_gamma"] = mx.nd.array(slope)
    net = get_network("d121", version_output="D")
    assert load_legacy_params(net, _checkpoint(tmp_path, params)) == []
    net.hybridize(static_alloc=True, static_shape=True)
    got = net(seeded_input(rec)).asnumpy().ravel()
    fc1 = np.asarray(rec["fc1"], dtype=np.float32)
    want = np.where(fc1 > 0, fc1, slope * fc1)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4


def test_dropout_is_active_in_training_only(hybridize):
    block = Dropout("DBstage1_unit1_dp1", 0.2)
    if hybridize:
        block.hybridize()
    x = mx.nd.ones((4, 32, 28, 28))
    assert (block(x).asnumpy() == 1).all()
    with mx.autograd.record(train_mode=True):
        y = block(x).asnumpy()
    assert set(np.unique(y).round(5)) == {0.0, 1.25}
    assert abs((y == 0).mean() - 0.2) < 0.02


@pytest.mark.parametrize("options, tag, replace, error", [
    ({}, "d169", {}, r"parameter TBstage3_conv1_weight has shape \(640, 1280, 1, 1\)"),
    ({}, "d121_input0", {}, r"missing 20 network parameters: head_bn1_gamma"),
    ({"version_input": 0}, "d121", {}, r"parameter conv0_weight has shape \(64, 3, 3, 3\)"),
    ({}, "d121_outputA", {}, r"missing 6 network parameters: pre_fc1_weight"),
    ({}, "d121_outputC", {}, r"1 parameters the network does not have: relu1_gamma"),
    ({}, "d121", {"pre_fc1_weight": (128, 1024)}, r"pre_fc1_weight has shape \(128, 1024\)")],
    ids=["d169", "version_input0", "into_version_input0", "outputA", "outputC", "emb128"])
def test_checkpoint_of_another_variant_fails_with_one_line(tmp_path, options, tag, replace, error):
    path = _checkpoint(tmp_path, _zeros(tag, **replace))
    with pytest.raises(CheckpointError, match=error) as err:
        load_legacy_params(get_network("d121", **options), path)
    assert "\n" not in str(err.value) and path in str(err.value)


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)
