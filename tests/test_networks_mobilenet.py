"""MobileNet v1 (``m1``) and v2 (``m2``): the 2018 names, widths, options and optimiser
multipliers, and checkpoints of another variant or option failing to load with one line.

Numerical parity with the 2018 graphs is in ``test_networks_zoo.py`` (records ``m1*``, ``m2``).
"""
import logging

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.nn import Activation, NativePReLU, PReLU

STATS = ("_moving_mean", "_moving_var", "_running_mean", "_running_var")
# The last 1x1 convolution of the 2018 m2, named inside Gluon's MobilenetV2.features.
M2_LAST = "mobilenetv20_hybridsequential0_"


def _images(n=1, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(0, 255, (n, 3, 112, 112)))


def _built(name, **options):
    net = get_network(name, **options)
    net.initialize(mx.init.Xavier())
    net(_images())
    return net


def _checkpoint(net, path, rename=None):
    """Save ``net`` as a 2018 checkpoint (``arg:``/``aux:`` keys), names mapped by ``rename``."""
    rename = rename or (lambda name: name)
    arrays = {("aux:" if name.endswith(STATS) else "arg:") + rename(name): param.data()
              for name, param in net.collect_params().items()}
    mx.nd.save(str(path), arrays)
    return str(path)


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def _one_line_error(net, path):
    with pytest.raises(CheckpointError) as err:
        load_legacy_params(net, path)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def m2_small():
    """An initialised m2 with an 8-wide embedding (the backbone is always full width)."""
    mx.random.seed(0)
    return _built("m2", emb_size=8)


def test_m2_has_the_gluon_names_of_2018(m2_small):
    shapes = {name: p.shape for name, p in m2_small.collect_params().items()}
    assert len(shapes) == 290  # 174 arguments and 116 BatchNorm statistics
    assert shapes["conv0_weight"] == (32, 3, 3, 3)
    assert shapes["batchnorm0_running_mean"] == (32,)
    assert shapes["invertedresidual0_conv3_weight"] == (16, 32, 1, 1)
    # later units of a sequence still expand its input width: 6 * 16, not 6 * 24
    assert shapes["invertedresidual2_conv0_weight"] == (96, 24, 1, 1)
    assert shapes["invertedresidual16_conv1_weight"] == (960, 1, 3, 3)
    assert shapes[M2_LAST + "conv0_weight"] == (1280, 320, 1, 1)
    assert shapes["pre_fc1_weight"] == (8, 1280 * 7 * 7)
    assert not any(name.endswith(("moving_mean", "moving_var")) for name in shapes
                   if not name.startswith(("bn1_", "fc1_")))
    projected = {name.split("_")[0] for name in shapes if name.endswith("_conv3_weight")}
    assert projected == {"invertedresidual0", "invertedresidual6", "invertedresidual16"}
    assert max(int(name.split("_")[0][len("invertedresidual"):]) for name in shapes
               if name.startswith("invertedresidual")) == 16


def test_m2_names_do_not_depend_on_gluon_name_counters():
    first = list(get_network("m2", emb_size=8).collect_params().keys())
    # Gluon's automatic names come from per-prefix counters that these advance.
    stock = nn.HybridSequential()
    stock.add(nn.Conv2D(4, 1), nn.BatchNorm(), nn.Activation("relu"), nn.Conv2D(4, 1))
    second = list(get_network("m2", emb_size=8).collect_params().keys())
    assert first == second
    assert "conv0_weight" in second and "batchnorm0_gamma" in second


def test_m2_runs_relu_only_hybridized_and_not(m2_small):
    blocks = list(_blocks(m2_small))
    assert not any(isinstance(b, (PReLU, NativePReLU)) for b in blocks)
    relus = [b for b in blocks if isinstance(b, Activation)]
    assert len(relus) == 1 + 17 * 2 + 3 + 1 and {b.act_type for b in relus} == {"relu"}
    x = _images(2, seed=1)
    eager = m2_small(x).asnumpy()
    m2_small.hybridize(static_alloc=True, static_shape=True)
    hybrid = m2_small(x).asnumpy()
    assert eager.shape == (2, 8) and np.isfinite(eager).all()
    np.testing.assert_allclose(hybrid, eager, rtol=1e-4, atol=1e-4)


def test_m2_backbone_decays_everything_and_the_head_keeps_mxnets_rule(m2_small):
    params = get_network("m2", emb_size=8).collect_params()
    declared = get_network("m2", emb_size=8).legacy_multipliers()
    assert set(declared) == {name for name in params if not name.startswith(("bn1_", "pre_fc1_", "fc1_"))}
    for name in ("batchnorm0_beta", "invertedresidual3_batchnorm1_beta", M2_LAST + "batchnorm0_gamma",
                 "conv0_weight"):
        assert (params[name].lr_mult, params[name].wd_mult) == (1.0, 1.0), name
    for name, wd in (("bn1_beta", 0.0), ("pre_fc1_bias", 0.0), ("fc1_beta", 0.0), ("bn1_gamma", 1.0),
                     ("pre_fc1_weight", 1.0)):
        assert (params[name].lr_mult, params[name].wd_mult) == (1.0, wd), name


def test_m2_ignores_version_options_as_2018_did(caplog):
    default = get_network("m2", emb_size=8)
    with caplog.at_level(logging.WARNING, logger="insightgluon.networks.base"):
        assert not caplog.records
        other = get_network("m2", emb_size=8, version_output="GDC", version_multiplier=0.5,
                            version_act="relu", version_input=0, version_se=1)
    assert {n: p.shape for n, p in other.collect_params().items()} == \
           {n: p.shape for n, p in default.collect_params().items()}
    warned = " ".join(r.getMessage() for r in caplog.records)
    for option in ("version_output='GDC'", "version_multiplier=0.5", "version_act='relu'",
                   "version_input=0", "version_se=1"):
        assert option in warned


def test_m2_rejects_a_bad_embedding_size():
    with pytest.raises(ConfigError, match="emb_size=0"):
        get_network("m2", emb_size=0)


@pytest.mark.parametrize("multiplier", [0.25, 0.3, 0.75, 1.0, 1.3])
def test_m1_widths_are_int_32_times_multiplier(multiplier):
    params = get_network("m1", version_multiplier=multiplier).collect_params()
    base = int(32 * multiplier)
    assert params["conv_1_conv2d_weight"].shape[0] == base
    assert params["conv_2_conv2d_weight"].shape[0] == 2 * base
    assert params["conv_13_dw_conv2d_weight"].shape[0] == 16 * base
    assert params["conv_14_conv2d_weight"].shape[0] == 32 * base


def test_m1_multiplier_leaving_no_filter_is_refused():
    with pytest.raises(ConfigError, match=r"version_multiplier=0\.03 leaves conv_1 without filters"):
        get_network("m1", version_multiplier=0.03)


@pytest.mark.parametrize("option, options", [
    ("version_output", dict(version_output="K")), ("version_input", dict(version_input=3)),
    ("version_multiplier", dict(version_multiplier=0)),
    ("version_output", dict(version_output="GDC", version_input=0))])
def test_m1_refuses_what_2018_fmobilenet_could_not_build(option, options):
    with pytest.raises(ConfigError, match=option) as err:
        get_network("m1", **options)
    assert "\n" not in str(err.value)


def _head_shapes(**options):
    sym = get_network("m1", **options)(mx.sym.var("data"))
    args, outs, _ = sym.infer_shape(data=(1, 3, 112, 112))
    return dict(zip(sym.list_arguments(), args)), outs[0]


@pytest.mark.parametrize("options, expected", [
    # 512 groups on 1024 channels (two per group), as 2018; 256 channels (2018: unbound): one each
    (dict(version_output="GDC"), {"conv_6dw7_7_conv2d_weight": (512, 2, 7, 7)}),
    (dict(version_output="GDC", version_multiplier=0.25), {"conv_6dw7_7_conv2d_weight": (256, 1, 7, 7)}),
    # GNAP: no convx on exactly 512 channels, a convx to emb_size above 512, as 2018;
    # other widths at emb_size <= 512 (2018: unbound) are mapped to 512 first
    (dict(version_output="GNAP", version_multiplier=0.5), {"pre_fc1_weight": (8, 512)}),
    (dict(version_output="GNAP", emb_size=1024), {"convx_weight": (1024, 1024, 1, 1)}),
    (dict(version_output="GNAP"), {"convx_weight": (512, 1024, 1, 1), "pre_fc1_weight": (8, 512)}),
    (dict(version_output="GAP"), {"relu1_gamma": (1024,), "pre_fc1_weight": (8, 1024)}),
])
def test_m1_later_2018_heads(options, expected):
    shapes, out = _head_shapes(**dict(dict(emb_size=8), **options))
    assert out == (1, options.get("emb_size", 8))
    assert {name: shapes.get(name) for name in expected} == expected
    assert ("convx_weight" in shapes) == ("convx_weight" in expected)


def test_m1_head_z_is_the_flattened_7x7_map():
    assert _head_shapes(version_output="Z", version_multiplier=0.25)[1] == (1, 256 * 7 * 7)


@pytest.mark.parametrize("act, expected", [("prelu", PReLU), ("relu", PReLU), ("tanh", PReLU),
                                           ("prelu_native", NativePReLU)])
def test_m1_activation_is_prelu_whatever_version_act(act, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="insightgluon.networks.mobilenet"):
        net = get_network("m1", version_act=act, version_output="D", version_multiplier=0.25)
    acts = [b for b in _blocks(net) if isinstance(b, (PReLU, NativePReLU, Activation))]
    assert len(acts) == 27 + 2  # conv_1 .. conv_14, then the D head's relu1 and fc1_relu
    assert all(type(b) is expected for b in acts)
    assert ("ignores version_act" in caplog.text) == (act not in ("prelu", "prelu_native"))


@pytest.mark.parametrize("version_input, side", [(0, 4), (1, 7), (2, 7)])
def test_m1_input_stride_sets_the_last_map(version_input, side):
    net = _built("m1", emb_size=8, version_input=version_input, version_multiplier=0.25)
    assert net.collect_params()["pre_fc1_weight"].shape == (8, 256 * side * side)


def test_checkpoint_of_another_multiplier_fails_naming_the_parameter(tmp_path):
    path = _checkpoint(_built("m1", emb_size=8, version_multiplier=0.25), tmp_path / "m-0000.params")
    message = _one_line_error(get_network("m1", emb_size=8, version_multiplier=0.5), path)
    assert "parameter conv_1_conv2d_weight has shape (8, 3, 3, 3)" in message
    assert "expects (16, 0, 3, 3)" in message


def test_checkpoint_of_another_head_fails_naming_the_missing(tmp_path):
    path = _checkpoint(_built("m1", version_output="A", version_multiplier=0.25),
                       tmp_path / "m-0000.params")
    message = _one_line_error(get_network("m1", emb_size=8, version_multiplier=0.25), path)
    assert "missing 6 network parameters" in message and "pre_fc1_weight" in message


def test_m1_and_m2_checkpoints_do_not_cross(tmp_path, m2_small):
    m1_path = _checkpoint(_built("m1", emb_size=8, version_multiplier=0.25), tmp_path / "a-0000.params")
    m2_path = _checkpoint(m2_small, tmp_path / "b-0000.params")
    assert "conv0_weight" in _one_line_error(get_network("m2", emb_size=8), m1_path)
    assert "conv_1_conv2d_weight" in _one_line_error(get_network("m1", emb_size=8), m2_path)


def test_m2_checkpoint_needs_gluon_statistics_names(tmp_path, m2_small):
    renamed = _checkpoint(m2_small, tmp_path / "m-0000.params",
                          rename=lambda n: n.replace("_running_", "_moving_"))
    message = _one_line_error(get_network("m2", emb_size=8), renamed)
    assert "missing 112 network parameters" in message
    assert "batchnorm0_running_mean" in message


def test_m2_checkpoint_of_another_embedding_size_fails(tmp_path, m2_small):
    path = _checkpoint(m2_small, tmp_path / "m-0000.params")
    message = _one_line_error(get_network("m2", emb_size=16), path)
    assert "pre_fc1_weight has shape (8, 62720)" in message


def test_m2_checkpoint_round_trip(tmp_path, m2_small):
    path = _checkpoint(m2_small, tmp_path / "m-0000.params")
    net = get_network("m2", emb_size=8)
    assert load_legacy_params(net, path) == []
    x = _images(1, seed=2)
    np.testing.assert_allclose(net(x).asnumpy(), m2_small(x).asnumpy(), rtol=1e-5, atol=1e-5)
