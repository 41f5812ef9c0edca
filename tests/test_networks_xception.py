"""Xception (``x1``): one grouped depthwise convolution per separable layer where the 2018 graph
had one convolution per channel; 2018 per-channel checkpoints load, exports load back and bind
in ``mx.mod.Module``; options as the 2018 builder read them; bad checkpoints are refused.
"""
import json
import random

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import HybridBlock

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.networks.xception import (SeparableConv, Xception, separable_channels,
                                            stack_depthwise_kernels)
from insightgluon.nn import Activation, PReLU, Sequence

BN = dict(fix_gamma=False, eps=2e-5, momentum=0.9)
SEPARABLE_LAYERS = 3 * 2 + 8 * 3 + 2 + 2  # entry b2..b4, middle blocks 0..7, exit b5, b6
CONVOLUTIONS = 2 + 2 * SEPARABLE_LAYERS + 4  # stem, depthwise + pointwise, shortcuts of b2..b5


def _images(n=1, size=112, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(0, 255, (n, 3, size, size)))


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


# -- a small graph in the 2018 style: every channel its own convolution --------------------------

def _sliced_separable(x, name, in_channels, out_channels):
    parts = mx.sym.SliceChannel(x, axis=1, num_outputs=in_channels)
    kernels = [mx.sym.Convolution(parts[i], num_filter=1, kernel=(3, 3), pad=(1, 1),
                                  name=f"{name}_depthwise_kernel_{i}") for i in range(in_channels)]
    x = mx.sym.Convolution(mx.sym.Concat(*kernels), num_filter=out_channels, kernel=(1, 1),
                           name=f"{name}_pointwise_kernel_conv2d")
    return mx.sym.BatchNorm(x, name=f"{name}_bn", **BN)


def _sliced_graph():
    """3 -> 12 -> 5 channels; 12 makes name order (kernel_10 < kernel_2) differ from channel order."""
    x = _sliced_separable(mx.sym.var("data"), "sepA", 3, 12)
    x = mx.sym.Activation(x, act_type="relu", name="sepB_relu")
    return _sliced_separable(x, "sepB", 12, 5)


class TinySeparable(HybridBlock):
    """Our equivalent of :func:`_sliced_graph`, converting 2018 checkpoints as ``Xception`` does."""

    def __init__(self):
        super().__init__(prefix="")
        with self.name_scope():
            self.body = Sequence([SeparableConv("sepA", 3, 12), Activation("sepB_relu", "relu"),
                                  SeparableConv("sepB", 12, 5)])

    def hybrid_forward(self, F, x):
        return self.body(x)

    def convert_legacy_params(self, saved):
        return stack_depthwise_kernels(saved, separable_channels(self))


def _sliced_checkpoint(tmp_path, drop=(), rename=None, extra=None, tag="sliced"):
    """Random arrays of :func:`_sliced_graph` saved in shuffled order; returns path, arrays, input."""
    sym = _sliced_graph()
    x = mx.nd.array(np.random.RandomState(1).normal(0, 1, (2, 3, 8, 8)))
    arg_shapes, _, aux_shapes = sym.infer_shape(data=x.shape)
    rng = np.random.RandomState(2)
    arrays = {}
    for prefix, names, shapes in (("arg", sym.list_arguments(), arg_shapes),
                                  ("aux", sym.list_auxiliary_states(), aux_shapes)):
        for name, shape in zip(names, shapes):
            if name != "data":
                low = 0.5 if name.endswith(("_var", "_gamma")) else -1.0
                arrays[f"{prefix}:{name}"] = mx.nd.array(rng.uniform(low, 1.5, shape))
    keys = [k for k in arrays if k.split(":", 1)[1] not in drop]
    random.Random(3).shuffle(keys)
    saved = {(rename or {}).get(k, k): arrays[k] for k in keys}
    saved.update(extra or {})
    path = str(tmp_path / f"{tag}-0000.params")
    mx.nd.save(path, saved)
    return path, arrays, x


def _run_module(sym, arrays, x):
    """Run ``sym`` as the 2018 code did: ``mx.mod.Module`` bound for inference."""
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None, context=mx.cpu())
    mod.bind(data_shapes=[("data", x.shape)], for_training=False)
    args = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("arg:")}
    auxs = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("aux:")}
    mod.set_params(args, auxs, allow_missing=False, allow_extra=True)
    mod.forward(mx.io.DataBatch([x]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def test_sliced_checkpoint_stacks_into_one_grouped_convolution(tmp_path, hybridize):
    path, arrays, x = _sliced_checkpoint(tmp_path)
    net = TinySeparable()
    assert load_legacy_params(net, path) == []
    params = net.collect_params()
    assert params["sepB_depthwise_weight"].shape == (12, 1, 3, 3)
    assert params["sepB_depthwise_bias"].shape == (12,)
    for i in (2, 10, 11):  # stacked by channel number, not by name order
        np.testing.assert_array_equal(params["sepB_depthwise_weight"].data()[i].asnumpy(),
                                      arrays[f"arg:sepB_depthwise_kernel_{i}_weight"][0].asnumpy())
        assert params["sepB_depthwise_bias"].data()[i].asscalar() == \
            arrays[f"arg:sepB_depthwise_kernel_{i}_bias"][0].asscalar()
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    want = _run_module(_sliced_graph(), arrays, x)
    got = net(x).asnumpy()
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_our_layout_is_left_unchanged():
    saved = {"sepA_depthwise_weight": mx.nd.ones((3, 1, 3, 3)), "other_weight": mx.nd.ones((2,))}
    assert stack_depthwise_kernels(saved, {"sepA": 3}) is saved
    # per-channel names of layers the network does not have are left for the loader to report
    stray = {"conv9_depthwise_kernel_0_weight": mx.nd.ones((1, 1, 3, 3))}
    assert stack_depthwise_kernels(stray, {"sepA": 3}) is stray


def _one_line_error(path, match):
    with pytest.raises(CheckpointError, match=match) as err:
        load_legacy_params(TinySeparable(), path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case, match", [
    (dict(drop=("sepB_depthwise_kernel_7_weight",)),
     r"missing sepB_depthwise_kernel_7_weight: sepB has 12 channels, numbered 0..11"),
    (dict(drop=("sepA_depthwise_kernel_0_bias", "sepA_depthwise_kernel_2_bias")),
     r"missing sepA_depthwise_kernel_0_bias and 1 more"),
    # numbered 1..12 instead of 0..11
    (dict(rename={f"arg:sepB_depthwise_kernel_{i}_{kind}": f"arg:sepB_depthwise_kernel_{i + 1}_{kind}"
                  for i in range(12) for kind in ("weight", "bias")}),
     r"missing sepB_depthwise_kernel_0_weight"),
    (dict(extra={"arg:sepA_depthwise_kernel_3_weight": mx.nd.ones((1, 1, 3, 3)),
                 "arg:sepA_depthwise_kernel_3_bias": mx.nd.ones((1,))}),
     r"unexpected sepA_depthwise_kernel_3_weight: sepA has 3 channels"),
    (dict(extra={"arg:sepA_depthwise_kernel_1_weight": mx.nd.ones((1, 1, 5, 5))}),
     r"sepA_depthwise_kernel_1_weight has shape \(1, 1, 5, 5\)"),
    (dict(extra={"arg:sepA_depthwise_kernel_2_bias": mx.nd.ones((2,))}),
     r"sepA_depthwise_kernel_2_bias has shape \(2,\)"),
    (dict(extra={"arg:sepA_depthwise_weight": mx.nd.ones((3, 1, 3, 3))}),
     r"sepA_depthwise_weight and the per-channel sepA_depthwise_kernel_\*_weight are both"),
    (dict(drop=("sepB_pointwise_kernel_conv2d_bias",)),
     r"missing 1 network parameters: sepB_pointwise"),
])
def test_bad_sliced_checkpoints_fail_in_one_line(tmp_path, case, match):
    path, _, _ = _sliced_checkpoint(tmp_path, **case)
    _one_line_error(path, match)


# -- the full network ------------------------------------------------------------------------------

def test_one_grouped_convolution_per_separable_layer():
    net = get_network("x1")
    layers = separable_channels(net)
    assert len(layers) == SEPARABLE_LAYERS == 34
    assert layers["Entry_flow_b2_sepconv1"] == 64 and layers["Exit_flow_b6_sepconv2"] == 768
    params = net.collect_params()
    assert params["Middle_flow_block_7_sepconv3_depthwise_weight"].shape == (364, 1, 3, 3)
    assert params["Exit_flow_b6_sepconv2_pointwise_kernel_conv2d_weight"].shape == (1024, 768, 1, 1)
    assert not any("_depthwise_kernel_" in name for name in params.keys())
    # every convolution has a bias, as in 2018; the body is plain relu, only the head is PReLU
    convs = [n[:-len("_weight")] for n in params.keys() if n.endswith("_weight") and "conv" in n]
    assert len(convs) == CONVOLUTIONS and all(f"{c}_bias" in params.keys() for c in convs)
    assert [b.gamma.name for b in _blocks(net) if isinstance(b, PReLU)] == []
    assert (params["Middle_flow_block_0_sepconv1_depthwise_weight"].wd_mult,
            params["Middle_flow_block_0_sepconv1_depthwise_bias"].wd_mult) == (1.0, 0.0)


def test_version_input_stem_and_widths():
    small, stride2, paper = (get_network("x1", version_input=v) for v in (1, 0, 2))
    assert small.stem._children["layer0"]._kwargs["stride"] == (1, 1)
    assert stride2.stem._children["layer0"]._kwargs["stride"] == (2, 2)
    assert separable_channels(paper)["Exit_flow_b6_sepconv2"] == 1536
    assert separable_channels(paper)["Middle_flow_block_3_sepconv2"] == 728
    # the 2018 builder took every value from 2 up as "the paper's widths"
    assert separable_channels(get_network("x1", version_input=5)) == separable_channels(paper)
    for bad in (-1, "1", True, 1.0):
        with pytest.raises(ConfigError, match="version_input"):
            get_network("x1", version_input=bad)


def test_options_the_2018_builder_did_not_read_change_nothing():
    def layout(net):
        return {n: p.shape for n, p in net.collect_params().items()}
    default = layout(get_network("x1"))
    for options in (dict(version_act="relu"), dict(version_se=1), dict(version_unit=1),
                    dict(version_multiplier=0.5), dict(version_act="prelu_native")):
        assert layout(get_network("x1", **options)) == default, options


def test_heads_are_those_of_the_2018_get_fc1():
    with pytest.raises(ConfigError, match=r"version_output='K'.*E, F, G") as err:
        get_network("x1", version_output="K")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"version_output='GDC' needs a 7x7") as err:
        get_network("x1", version_output="GDC", version_input=0)  # 4x4: 2018 could not bind it
    for head, width in (("GDC", 8), ("GNAP", 8), ("GAP", 8), ("Z", 1024 * 7 * 7)):
        out = get_network("x1", emb_size=8, version_output=head)(mx.sym.var("data"))
        assert out.infer_shape(data=(1, 3, 112, 112))[1] == [(1, width)], head
    net = get_network("x1", version_output="A", version_input=0)
    net.initialize()
    assert net(_images(size=112)).shape == (1, 1024)  # A: the last width, not emb_size
    assert [b.gamma.name for b in _blocks(net) if isinstance(b, PReLU)] == ["relu1_gamma"]


def _initialised(emb_size=8, **options):
    net = get_network("x1", emb_size=emb_size, **options)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    net(_images())  # deferred shapes
    for name, param in net.collect_params().items():  # statistics and biases away from the defaults
        if name.endswith(("_moving_mean", "_beta", "_bias")):
            param.set_data(mx.nd.random.normal(0, 0.1, param.shape))
        elif name.endswith("_moving_var"):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, param.shape))
    return net


def _as_2018_checkpoint(net, path):
    """``net``'s arrays under the 2018 names: one depthwise kernel and bias per channel."""
    saved = {}
    layers = separable_channels(net)
    for name, param in net.collect_params().items():
        tag = "aux" if name.endswith(("_moving_mean", "_moving_var")) else "arg"
        layer, _, kind = name.rpartition("_depthwise_")
        if layer in layers:
            for i in range(layers[layer]):
                saved[f"arg:{layer}_depthwise_kernel_{i}_{kind}"] = param.data()[i:i + 1]
        else:
            saved[f"{tag}:{name}"] = param.data()
    mx.nd.save(path, saved)
    return path


def test_2018_layout_round_trip_gives_the_same_embedding(tmp_path):
    x = _images(n=2)
    net = _initialised()
    want = net(x).asnumpy()
    path = _as_2018_checkpoint(net, str(tmp_path / "x1-0000.params"))
    again = get_network("x1", emb_size=8)
    assert load_legacy_params(again, path) == []
    np.testing.assert_allclose(again(x).asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_export_loads_back_and_binds_in_module(tmp_path):
    x = _images(n=2)
    net = _initialised()
    net.hybridize(static_alloc=True, static_shape=True)
    want = net(x).asnumpy()
    prefix = str(tmp_path / "x1")
    net.export(prefix, epoch=1)

    with open(prefix + "-symbol.json") as handle:
        ops = [node["op"] for node in json.load(handle)["nodes"]]
    assert "SliceChannel" not in ops and "Concat" not in ops
    assert ops.count("Convolution") == CONVOLUTIONS
    sym, args, auxs = mx.model.load_checkpoint(prefix, 1)
    assert "fc1_output" in sym.get_internals().list_outputs()
    assert "Entry_flow_b2_sepconv1_depthwise_weight" in args
    arrays = {**{f"arg:{k}": v for k, v in args.items()}, **{f"aux:{k}": v for k, v in auxs.items()}}
    np.testing.assert_allclose(_run_module(sym, arrays, x), want, rtol=1e-5, atol=1e-5)

    again = get_network("x1", emb_size=8)
    assert load_legacy_params(again, prefix + "-0001.params") == []
    np.testing.assert_allclose(again(x).asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_checkpoints_of_other_options_fail_in_one_line(tmp_path):
    paper = _initialised(version_input=2)
    path = _as_2018_checkpoint(paper, str(tmp_path / "paper-0000.params"))
    with pytest.raises(CheckpointError, match=r"unexpected Entry_flow_b2_sepconv2_depthwise_kernel_64_"
                                              r"weight: Entry_flow_b2_sepconv2 has 64 channels") as err:
        load_legacy_params(get_network("x1", emb_size=8), path)
    assert "\n" not in str(err.value)

    path = _as_2018_checkpoint(_initialised(version_input=0), str(tmp_path / "stride2-0000.params"))
    net = get_network("x1", emb_size=8)
    net.initialize()
    net(_images())
    with pytest.raises(CheckpointError, match=r"parameter pre_fc1_weight has shape \(8, 16384\), "
                                              r"the network expects \(8, 50176\)") as err:
        load_legacy_params(net, path)
    assert "\n" not in str(err.value)

    headless = {k: v for k, v in mx.nd.load(path).items() if "fc1" not in k}
    mx.nd.save(path, headless)
    with pytest.raises(CheckpointError, match=r"missing \d+ network parameters: .*pre_fc1_weight"):
        load_legacy_params(get_network("x1", emb_size=8, version_input=0), path)


def test_network_class_is_registered():
    assert isinstance(get_network("x1"), Xception)
