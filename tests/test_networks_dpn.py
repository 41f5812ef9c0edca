"""Dual Path Networks (``p68`` ... ``p131``) keep the 2018 fdpn graph: widths, stems, heads,
activations and BatchNorm settings; checkpoints of another variant or option are refused.

Shapes come from symbolic inference (no forward pass); the numerics against the 2018
graphs are in ``test_networks_zoo.py`` (records ``p68``, ``p92``, ``p107``, ``p131``,
``p68_input0``, ``p68_outputC``, ``p68_outputJ``, ``p68_outputGNAP_emb1024``).
"""
import json

import mxnet as mx
import pytest

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.nn import PReLU

EMB = 8
# What the 2018 graphs hold, per depth: units per stage conv2_x..conv5_x, the grouped
# 3x3 weight of conv2_x__1, the width of c1x1-c per stage (residual + dense increment)
# and the channels that reach the head.
GRAPH_2018 = {
    68: ((3, 4, 12, 3), (128, 4, 3, 3), (272, 544, 1056, 2112), 2368),
    92: ((3, 4, 20, 3), (96, 3, 3, 3), (272, 544, 1048, 2176), 2688),
    107: ((4, 8, 20, 3), (200, 4, 3, 3), (276, 576, 1088, 2176), 2688),
    131: ((4, 8, 28, 3), (160, 4, 3, 3), (272, 544, 1056, 2176), 2688),
}
# Heads of the 2018 get_fc1 that take any width (GDC and GNAP are tested on their own).
HEADS_2018 = ("E", "F", "G", "H", "I", "J", "A", "AX", "B", "BX", "C", "CX", "D", "DX", "GAP", "Z")


def _graph(name="p68", **options):
    net = get_network(name, emb_size=EMB, **options)
    return net, net(mx.sym.var("data"))


def _shapes(sym):
    """``{"arg:NAME"|"aux:NAME": shape}`` of a 2018-style checkpoint of ``sym``."""
    args, outs, auxs = sym.infer_shape(data=(1, 3, 112, 112))
    shapes = {"arg:" + n: s for n, s in zip(sym.list_arguments(), args) if n != "data"}
    shapes.update({"aux:" + n: s for n, s in zip(sym.list_auxiliary_states(), auxs)})
    return shapes, outs[0]


def _checkpoint(tmp_path, tag, shapes):
    path = str(tmp_path / f"{tag}-0000.params")
    mx.nd.save(path, {key: mx.nd.zeros(shape) for key, shape in shapes.items()})
    return path


def _nodes(sym):
    return json.loads(sym.tojson())["nodes"]


def _operators(sym):
    """Every operator with its attributes and inputs (Dropout names carry a global counter)."""
    return [(n["op"], n.get("attrs"), n["inputs"], n["name"] if n["op"] != "Dropout" else "")
            for n in _nodes(sym) if n["op"] != "null"]


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


@pytest.mark.parametrize("depth", sorted(GRAPH_2018))
def test_variants_have_the_2018_widths(depth):
    units, grouped, widths, channels = GRAPH_2018[depth]
    _, sym = _graph(f"p{depth}")
    shapes, out = _shapes(sym)
    assert out == (1, EMB)
    for stage, (count, width) in enumerate(zip(units, widths), start=2):
        names = [k for k in shapes if k.startswith(f"arg:conv{stage}_x__") and
                 k.endswith("_c1x1-a__conv_weight")]
        assert len(names) == count, (stage, len(names))
        assert shapes[f"arg:conv{stage}_x__{count}_c1x1-c__conv_weight"][0] == width
        stride = 1 if stage == 2 else 2
        assert f"arg:conv{stage}_x__1_c1x1-w(s/{stride})__conv_weight" in shapes
        assert f"arg:conv{stage}_x__2_c1x1-w(s/{stride})__conv_weight" not in shapes
    assert shapes["arg:conv2_x__1_c3x3-b__conv_weight"] == grouped
    assert shapes["arg:bn1_gamma"] == (channels,)
    assert shapes["arg:pre_fc1_weight"] == (EMB, channels * 7 * 7)


def test_version_input_chooses_the_2018_stem():
    ir, _ = _shapes(_graph()[1])
    assert ir["arg:conv0_weight"] == (64, 3, 3, 3)
    assert ir["arg:head_conv2_weight"] == (64, 64, 3, 3)
    assert ir["arg:head_conv1sc_weight"] == (64, 64, 1, 1)
    wide, _ = _shapes(_graph(version_input=0)[1])
    assert wide["arg:conv0_weight"] == (128, 3, 7, 7)
    assert not [k for k in wide if k.startswith(("arg:head_", "aux:head_"))]
    # 112 -> 56 (conv) -> 28 (max-pool), so conv5_x ends at 4x4
    assert wide["arg:pre_fc1_weight"] == (EMB, 2368 * 4 * 4)
    # fdpn tested only version_input == 0: every other value built the IR stem
    assert _shapes(_graph(version_input=2)[1])[0] == ir


@pytest.mark.parametrize("value", [-1, 1.5, "1", None])
def test_version_input_the_2018_builder_refused(value):
    with pytest.raises(ConfigError, match="version_input") as err:
        get_network("p68", version_input=value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("head", HEADS_2018)
def test_every_2018_head(head):
    _, sym = _graph(version_output=head)
    shapes, out = _shapes(sym)
    assert out == {"A": (1, 2368), "AX": (1, 2368), "Z": (1, 2368 * 7 * 7)}.get(head, (1, EMB))
    pooled = head[0] in "ABCD" or head == "GAP"
    assert ("arg:relu1_gamma" in shapes) == pooled
    assert ("arg:fc1_relu_gamma" in shapes) == head.startswith("D")


def test_gnap_above_512_is_the_2018_graph():
    shapes, out = _shapes(get_network("p68", emb_size=1024, version_output="GNAP")(mx.sym.var("data")))
    assert out == (1, 1024)
    assert shapes["arg:convx_weight"] == (1024, 2368, 1, 1)
    assert "arg:pre_fc1_weight" not in shapes and "arg:bn6w_gamma" not in shapes


def test_heads_2018_could_not_build_on_2368_channels():
    """2018's GDC (512 groups) and GNAP at emb_size <= 512 (a 512-channel attention map)
    failed to bind on 2368 channels: GDC gets one group per channel, GNAP a 1x1 map to 512."""
    gdc, out = _shapes(_graph(version_output="GDC")[1])
    assert out == (1, EMB)
    assert gdc["arg:conv_6dw7_7_conv2d_weight"] == (2368, 1, 7, 7)
    assert gdc["arg:pre_fc1_weight"] == (EMB, 2368)
    gnap, out = _shapes(_graph(version_output="GNAP")[1])
    assert out == (1, EMB)
    assert gnap["arg:convx_weight"] == (512, 2368, 1, 1)
    assert gnap["arg:pre_fc1_weight"] == (EMB, 512)


@pytest.mark.parametrize("options", [dict(version_output="K"),
                                     dict(version_output="GDC", version_input=0)])
def test_heads_that_cannot_be_built_are_refused(options):
    with pytest.raises(ConfigError, match="version_output") as err:
        get_network("p68", **options)
    assert "\n" not in str(err.value)


def test_activations_and_batchnorm_are_the_2018_ones():
    net, sym = _graph(version_output="D")
    prelu = sorted(b.gamma.name for b in _blocks(net) if isinstance(b, PReLU))
    assert prelu == ["fc1_relu_gamma", "head_relu1_gamma", "relu0_gamma", "relu1_gamma"]
    nodes = _nodes(sym)
    relus = [n["name"] for n in nodes if n["op"] == "Activation"]
    units = sum(GRAPH_2018[68][0])
    # three pre-activations per unit and one per projection (the first unit of each stage)
    assert len([r for r in relus if r.endswith("__ac__relu")]) == 3 * units + 4
    for node in nodes:
        if node["op"] != "BatchNorm":
            continue
        attrs = node["attrs"]
        eps = 1e-3 if node["name"].endswith("__bn__bn") else 2e-5
        assert float(attrs["eps"]) == pytest.approx(eps), node["name"]
        assert float(attrs["momentum"]) == pytest.approx(0.9), node["name"]
        assert attrs["fix_gamma"] == ("True" if node["name"] == "fc1" else "False"), node["name"]


def test_operator_names_are_the_2018_ones():
    names = {n["name"] for n in _nodes(_graph()[1])}
    assert {"conv0", "bn0", "relu0", "head_bn3", "head_sc", "conv2_x__1_c1x1-w(s/1)__conv",
            "conv2_x__1_c1x1-w(s/1)-split1", "conv2_x__1_c1x1-c-split2", "conv2_x__1_sum",
            "conv2_x__1_cat", "conv2_x__2_cat-input", "conv3_x__1_c1x1-w(s/2)-split2",
            "conv5_x__3_sum", "conv5_x_x_cat-final", "bn1", "pre_fc1", "fc1"} <= names
    assert "conv2_x__1_cat-input" not in names  # the first unit reads the stem alone


@pytest.mark.parametrize("options", [dict(version_act="relu"), dict(version_multiplier=0.25),
                                     dict(bn_mom=0.5), dict(version_se=1, version_unit=1)])
def test_options_the_2018_builder_did_not_read_change_nothing(options):
    default_net, default_sym = _graph()
    net, sym = _graph(**options)
    assert _shapes(sym)[0] == _shapes(default_sym)[0]
    assert _operators(sym) == _operators(default_sym)
    assert sorted(b.name for b in _blocks(net) if isinstance(b, PReLU)) == \
        sorted(b.name for b in _blocks(default_net) if isinstance(b, PReLU))


def test_own_checkpoint_loads(tmp_path):
    path = _checkpoint(tmp_path, "p68", _shapes(_graph()[1])[0])
    assert load_legacy_params(get_network("p68", emb_size=EMB), path) == []


@pytest.mark.parametrize("saved, options, message", [
    (("p68", {}), ("p92", {}), r"missing \d+ network parameters: .*conv4_x__13_"),
    (("p92", {}), ("p68", {}), r"conv2_x__1_c1x1-a__conv_weight has shape \(96, 64, 1, 1\)"),
    (("p68", {}), ("p68", {"version_input": 0}), r"parameter conv0_weight has shape \(64, 3, 3, 3\)"),
    (("p68", {"version_input": 0}), ("p68", {}), r"missing \d+ network parameters: head_bn1_gamma"),
    (("p68", {}), ("p68", {"version_output": "C"}), r"missing 1 network parameters: relu1_gamma"),
    (("p68", {"version_output": "C"}), ("p68", {}), r"1 parameters the network does not have: relu1_gamma"),
])
def test_checkpoint_of_another_variant_or_option_is_refused(tmp_path, saved, options, message):
    path = _checkpoint(tmp_path, saved[0], _shapes(_graph(saved[0], **saved[1])[1])[0])
    with pytest.raises(CheckpointError, match=message) as err:
        load_legacy_params(get_network(options[0], emb_size=EMB, **options[1]), path)
    assert "\n" not in str(err.value) and path in str(err.value)


def test_checkpoint_with_a_wrong_shape_is_refused(tmp_path):
    shapes = _shapes(_graph()[1])[0]
    shapes["arg:conv3_x__2_c1x1-c__conv_weight"] = (512 + 64, 256, 1, 1)
    path = _checkpoint(tmp_path, "wrong", shapes)
    with pytest.raises(CheckpointError, match=r"conv3_x__2_c1x1-c__conv_weight has shape "
                                              r"\(576, 256, 1, 1\), the network expects \(544,") as err:
        load_legacy_params(get_network("p68", emb_size=EMB), path)
    assert "\n" not in str(err.value)
