"""Inception-ResNet-v2 (``i4``): the 2018 graph's automatic names, its layer settings and options,
and 2018 checkpoints of other options (or renumbered) against ``load_legacy_params``.

Numerics per option are checked by the parity records (``tests/legacy_zoo/i4*.json.gz``).
Checkpoints here are built from our own network's shapes at a 40x40 input (the backbone is
input-size independent; only the dense layer of the head follows the input).
"""
import json
import re

import mxnet as mx
import numpy as np
import pytest

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.nn import PReLU

SMALL = (1, 3, 40, 40)
# stem 5, mixed_5b 7, 10 x block35 7, mixed_6a 4, 20 x block17 5, mixed_7a 6, 10 x block8 5, final 1
CONVS = 244


def _graph(net):
    return json.loads(net(mx.sym.var("data")).tojson())["nodes"]


def _ops(nodes, op):
    return [node for node in nodes if node["op"] == op]


def _checkpoint(path, shapes, rename=None, drop=(), reshape=None):
    """A 2018-style ``.params`` of ``shapes`` ({name: (kind, shape)}); each array is filled with
    its position so that a renamed load can be traced."""
    rename, reshape = rename or {}, reshape or {}
    arrays = {}
    for index, (name, (kind, shape)) in enumerate(shapes.items()):
        if name in drop:
            continue
        arrays[f"{kind}:{rename.get(name, name)}"] = mx.nd.full(reshape.get(name, shape), index % 97 + 1)
    mx.nd.save(str(path), arrays)
    return str(path)


def _shapes(**options):
    """{name: ("arg"|"aux", shape)} of ``get_network("i4", **options)`` at a 40x40 input."""
    sym = get_network("i4", emb_size=8, **options)(mx.sym.var("data"))
    args, _, auxs = sym.infer_shape(data=SMALL)
    out = {n: ("arg", tuple(s)) for n, s in zip(sym.list_arguments(), args) if n != "data"}
    out.update({n: ("aux", tuple(s)) for n, s in zip(sym.list_auxiliary_states(), auxs)})
    return out


@pytest.fixture(scope="module")
def default_shapes():
    return _shapes()


def test_two_networks_in_one_process_have_identical_names():
    first = list(get_network("i4").collect_params().keys())
    # Bump MXNet's process-wide name counters, as building another 2018 network did.
    mx.sym.BatchNorm(mx.sym.Convolution(mx.sym.var("x"), kernel=(1, 1), num_filter=1))
    mx.gluon.nn.BatchNorm()
    second = list(get_network("i4").collect_params().keys())
    assert first == second
    assert first[:3] == ["convolution0_weight", "convolution0_bias", "batchnorm0_gamma"]
    assert "convolution243_bias" in first and "batchnorm243_moving_var" in first
    assert "convolution244_weight" not in first and "batchnorm244_gamma" not in first
    assert first[-10:] == ["bn1_gamma", "bn1_beta", "bn1_moving_mean", "bn1_moving_var",
                           "pre_fc1_weight", "pre_fc1_bias", "fc1_gamma", "fc1_beta",
                           "fc1_moving_mean", "fc1_moving_var"]


def test_operators_carry_the_2018_automatic_names_and_settings():
    net = get_network("i4")
    nodes = _graph(net)
    convs, bns = _ops(nodes, "Convolution"), _ops(nodes, "BatchNorm")
    assert [n["name"] for n in convs] == [f"convolution{i}" for i in range(CONVS)]
    assert all(n["attrs"]["no_bias"] == "False" for n in convs)
    backbone_bns = [n for n in bns if n["name"].startswith("batchnorm")]
    assert [n["name"] for n in backbone_bns] == [f"batchnorm{i}" for i in range(CONVS)]
    # MXNet's BatchNorm defaults, which the 2018 builder did not override
    assert {(n["attrs"]["eps"], n["attrs"]["fix_gamma"], n["attrs"]["momentum"]) for n in backbone_bns} == {
        ("0.001", "True", "0.9")}
    params = net.collect_params()
    assert all(params[f"batchnorm{i}_gamma"].grad_req == "null" for i in range(CONVS))
    acts = _ops(nodes, "Activation")
    assert [n["name"] for n in acts] == [f"activation{i}" for i in range(len(acts))]
    assert len(acts) == 243 and {n["attrs"]["act_type"] for n in acts} == {"relu"}
    assert not _ops(nodes, "LeakyReLU") and not any(isinstance(b, PReLU) for b in _blocks(net))
    assert [n["name"] for n in _ops(nodes, "Concat")] == [f"concat{i}" for i in range(43)]
    assert [n["name"] for n in _ops(nodes, "elemwise_add")] == [f"_plus{i}" for i in range(40)]
    # the stem's unused max-pool took pooling0
    assert [n["name"] for n in _ops(nodes, "Pooling")] == [f"pooling{i}" for i in range(1, 5)]


def test_residual_scalings():
    nodes = _graph(get_network("i4"))
    scales = [(n["name"], float(n["attrs"]["scalar"])) for n in _ops(nodes, "_mul_scalar")]
    assert scales[0] == ("_mulscalar0", 0.0078125)  # the input normalisation
    assert [name for name, _ in scales[1:]] == [f"_mulscalar{i}" for i in range(1, 41)]
    assert [s for _, s in scales[1:]] == [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]
    # the last block8 adds without an activation, straight into the 1536-channel convolution
    by_name = {n["name"]: n for n in nodes}
    final = by_name["convolution243"]
    assert nodes[final["inputs"][0][0]]["name"] == "_plus39"
    assert final["attrs"]["num_filter"] == "1536"


def test_block_shapes_follow_the_2018_quirks(default_shapes):
    shapes = {name: shape for name, (_, shape) in default_shapes.items()}
    # block35_1: convs 12..18; block17_1 starts at conv 86 with its 129-channel 1x1
    assert shapes["convolution18_weight"] == (320, 128, 1, 1)
    assert shapes["convolution87_weight"] == (129, 1088, 1, 1)
    assert shapes["convolution88_weight"] == (160, 129, 1, 7)
    assert shapes["convolution89_weight"] == (192, 160, 7, 1)
    assert shapes["convolution243_weight"] == (1536, 2080, 1, 1)
    assert shapes["pre_fc1_weight"] == (8, 1536 * 3 * 3)


@pytest.mark.parametrize("version_input, side", [(1, 12), (0, 5), (2, 12)])
def test_version_input_sets_the_first_stride(version_input, side):
    net = get_network("i4", emb_size=8, version_input=version_input)
    sym = net(mx.sym.var("data")).get_internals()["convolution243_output"]
    _, (shape,), _ = sym.infer_shape(data=(1, 3, 112, 112))
    assert shape == (1, 1536, side, side)


def _graph_json(**options):
    # the head's dropout takes its (parameter-free) operator name from MXNet's process-wide counter
    return re.sub(r"dropout\d+_fwd", "dropout_fwd", get_network("i4", **options)(mx.sym.var("data")).tojson())


def test_options_the_2018_builder_did_not_read_change_nothing():
    reference = _graph_json()
    for options in ({"version_act": "tanh"}, {"version_se": 1}, {"version_unit": 1},
                    {"version_multiplier": 0.5}, {"bn_mom": 0.5}):
        assert _graph_json(**options) == reference, options


def test_pooled_heads_use_prelu_like_2018():
    net = get_network("i4", emb_size=8, version_output="D", version_act="relu")
    names = sorted(b.gamma.name for b in _blocks(net) if isinstance(b, PReLU))
    assert names == ["fc1_relu_gamma", "relu1_gamma"]


@pytest.mark.parametrize("option, options", [
    ("version_output", dict(version_output="K")), ("version_input", dict(version_input=-1)),
    ("version_input", dict(version_input="1")), ("emb_size", dict(emb_size=0)),
    ("version_output", dict(version_output="GDC", version_input=0))])
def test_values_the_2018_builder_could_not_build_are_refused(option, options):
    with pytest.raises(ConfigError, match=option) as err:
        get_network("i4", **options)
    assert "\n" not in str(err.value)


def _head_shapes(size, **options):
    sym = get_network("i4", **options)(mx.sym.var("data"))
    args, outs, _ = sym.infer_shape(data=(1, 3, size, size))
    return dict(zip(sym.list_arguments(), args)), outs[0]


def test_gdc_on_the_12x12_map_flattens_6x6_positions_like_2018():
    """2018's GDC kept 512 groups on 1536 channels and did not pool the larger map: its valid
    7x7 conv leaves 6x6 positions, all fed to ``pre_fc1``; a map under 7x7 cannot be bound."""
    shapes, out = _head_shapes(112, emb_size=8, version_output="GDC")
    assert out == (1, 8)
    assert shapes["conv_6dw7_7_conv2d_weight"] == (512, 3, 7, 7)
    assert shapes["pre_fc1_weight"] == (8, 512 * 6 * 6)
    with pytest.raises(mx.MXNetError):
        _head_shapes(40, emb_size=8, version_output="GDC")


def test_gnap_gap_and_z_heads_on_1536_channels():
    gnap, out = _head_shapes(40, emb_size=1024, version_output="GNAP")
    assert out == (1, 1024) and gnap["convx_weight"] == (1024, 1536, 1, 1)
    gnap, out = _head_shapes(40, emb_size=8, version_output="GNAP")  # 2018: unbound at <= 512
    assert out == (1, 8) and gnap["convx_weight"] == (512, 1536, 1, 1)
    gap, out = _head_shapes(40, emb_size=8, version_output="GAP")
    assert out == (1, 8) and gap["pre_fc1_weight"] == (8, 1536)
    assert _head_shapes(40, version_output="Z")[1] == (1, 1536 * 3 * 3)


@pytest.mark.budget(reason="two full-size i4 checkpoints (54 M parameters) loaded by name", memory_gib=1.5)
def test_checkpoint_loads_and_renumbered_counters_are_read(tmp_path, default_shapes):
    net = get_network("i4", emb_size=8)
    assert load_legacy_params(net, _checkpoint(tmp_path / "a-0000.params", default_shapes)) == []
    # a process that built another network first started the batchnorm counter at 1
    shifted = {name: re.sub(r"^batchnorm(\d+)", lambda m: f"batchnorm{int(m.group(1)) + 1}", name)
               for name in default_shapes}
    path = _checkpoint(tmp_path / "b-0000.params", default_shapes, rename=shifted)
    renumbered = get_network("i4", emb_size=8)
    load_legacy_params(renumbered, path)
    ours, theirs = net.collect_params(), renumbered.collect_params()
    for name in ("batchnorm0_gamma", "batchnorm100_moving_mean", "batchnorm243_beta", "convolution5_weight"):
        np.testing.assert_array_equal(ours[name].data().asnumpy(), theirs[name].data().asnumpy())


def test_inconsistently_numbered_checkpoint_fails(tmp_path, default_shapes):
    # only part of the batchnorms shifted: not a counter offset, so nothing is renamed
    shifted = {name: name.replace("batchnorm243_", "batchnorm244_") for name in default_shapes}
    path = _checkpoint(tmp_path / "c-0000.params", default_shapes, rename=shifted)
    with pytest.raises(CheckpointError, match=r"missing 4 network parameters: batchnorm243_gamma") as err:
        load_legacy_params(get_network("i4", emb_size=8), path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"version_output": "F"}, r"missing 5 network parameters: pre_fc1_bias, fc1_gamma"),
    ({"version_output": "A"}, r"missing 6 network parameters: pre_fc1_weight"),
    ({"version_output": "J"}, r"missing 4 network parameters: bn1_gamma, bn1_beta"),
])
def test_checkpoint_of_another_head_fails_with_one_line(tmp_path, options, message):
    path = _checkpoint(tmp_path / "h-0000.params", _shapes(**options))
    with pytest.raises(CheckpointError, match=message) as err:
        load_legacy_params(get_network("i4", emb_size=8), path)
    assert "\n" not in str(err.value)


def test_checkpoint_of_the_other_stem_or_a_wrong_shape_fails(tmp_path, default_shapes):
    # version_input 0 changes only the dense layer's input (1 x 1 maps at 40 x 40, not 3 x 3)
    path = _checkpoint(tmp_path / "s-0000.params", _shapes(version_input=0))
    net = get_network("i4", emb_size=8)
    net.infer_shape(mx.nd.zeros(SMALL))
    with pytest.raises(CheckpointError, match=r"pre_fc1_weight has shape \(8, 1536\), the network "
                                              r"expects \(8, 13824\)"):
        load_legacy_params(net, path)
    path = _checkpoint(tmp_path / "w-0000.params", default_shapes,
                       reshape={"convolution88_weight": (160, 128, 1, 7)})
    with pytest.raises(CheckpointError, match=r"convolution88_weight has shape \(160, 128, 1, 7\)") as err:
        load_legacy_params(get_network("i4", emb_size=8), path)
    assert "\n" not in str(err.value)


def test_checkpoint_missing_a_convolution_bias_fails(tmp_path, default_shapes):
    path = _checkpoint(tmp_path / "m-0000.params", default_shapes, drop={"convolution7_bias"})
    with pytest.raises(CheckpointError, match=r"missing 1 network parameters: convolution7_bias"):
        load_legacy_params(get_network("i4", emb_size=8), path)


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)
