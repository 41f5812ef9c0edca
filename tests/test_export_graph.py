"""The fast-PReLU rewrite of any MXNet graph: bit for bit the native graph, in every executor."""
import json
import logging

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from _legacy_graphs import legacy_resnet, random_checkpoint  # noqa: E402
from insightgluon.export.graph import count_prelu, fast_prelu_symbol  # noqa: E402
from insightgluon.engines import load_embedding_model  # noqa: E402
from insightgluon.nn.prelu import PReLU  # noqa: E402

SHAPE = (4, 3, 24, 24)


def native_graph():
    """PReLU on 4-D maps (one read twice), a slope shared by all channels, and on (N, C) after a dense layer."""
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Convolution(x, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv0")
    a = mx.sym.LeakyReLU(x, act_type="prelu", name="relu0")
    x = mx.sym.Convolution(a, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv1") + a
    x = mx.sym.Convolution(x, num_filter=16, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv2")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="relu1")
    shared = mx.sym.var("relu2_gamma", shape=(1,))
    x = mx.sym.LeakyReLU(x, gamma=shared, act_type="prelu", name="relu2")
    x = mx.sym.FullyConnected(x, num_hidden=12, name="pre_fc1")
    return mx.sym.LeakyReLU(x, act_type="prelu", name="fc1")


def random_params(symbol, seed=0):
    rng = np.random.default_rng(seed)
    shapes, _, _ = symbol.infer_shape(data=SHAPE)
    params = {}
    for name, shape in zip(symbol.list_arguments(), shapes):
        if name != "data":
            # slopes of both signs, so both branches of every PReLU are exercised
            params[name] = mx.nd.array(rng.uniform(-0.6, 0.6, shape) if name.endswith("_gamma")
                                       else rng.normal(0, 0.5, shape))
    return params


@pytest.fixture(scope="module")
def graphs():
    native = native_graph()
    return native, fast_prelu_symbol(native, SHAPE), random_params(native)


@pytest.fixture(scope="module")
def pixels():
    return mx.nd.array(np.random.default_rng(1).uniform(0, 255, SHAPE))


def run_block(symbol, params, pixels, output):
    block = mx.gluon.SymbolBlock(symbol.get_internals()[output], mx.sym.var("data", dtype="float32"))
    block.collect_params().load_dict({k: params[k] for k in block.collect_params().keys()})
    block.hybridize(static_alloc=True, static_shape=True)
    return block(pixels).asnumpy()


def run_module(symbol, params, pixels, output):
    mod = mx.mod.Module(symbol.get_internals()[output], data_names=["data"], label_names=None)
    mod.bind([("data", pixels.shape)], for_training=False)
    mod.set_params({k: v for k, v in params.items() if k in mod.symbol.list_arguments()}, {})
    mod.forward(mx.io.DataBatch([pixels]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


def test_every_per_channel_prelu_is_rewritten_with_the_blocks_operators(graphs):
    native, fast, _ = graphs
    assert (count_prelu(native), count_prelu(fast)) == (4, 1)  # the shared slope stays native
    assert fast.list_outputs() == ["fc1_output"]
    assert fast.list_arguments() == native.list_arguments()
    names = set(fast.get_internals().list_outputs())
    assert {"relu0_output", "relu1_output", "relu2_output"} <= names
    nodes = json.loads(fast.tojson())["nodes"]
    for layer, channels, spatial in (("relu0", 8, True), ("relu1", 16, True), ("fc1", 12, False)):
        block = PReLU(layer, channels, spatial=spatial)
        want = [n for n in json.loads(block.hybrid_forward(mx.sym, mx.sym.var("x"), mx.sym.var("g")).tojson())
                ["nodes"] if n["op"] != "null"]
        got = [n for n in nodes if n["name"] == layer or n["name"].startswith(f"{layer}_")]
        assert [(n["op"], n.get("attrs")) for n in got if n["op"] != "null"] == \
            [(n["op"], n.get("attrs")) for n in want]


@pytest.mark.parametrize("runner", [run_block, run_module], ids=["SymbolBlock", "Module"])
@pytest.mark.parametrize("output", ["relu0_output", "relu1_output", "fc1_output"])
def test_fast_graph_is_bit_identical(graphs, pixels, runner, output):
    native, fast, params = graphs
    want, got = runner(native, params, pixels, output), runner(fast, params, pixels, output)
    assert (want < 0).any() and (want > 0).any()
    np.testing.assert_array_equal(got, want)


def test_graph_without_prelu_is_returned_as_is():
    sym = mx.sym.Activation(mx.sym.var("data"), act_type="relu", name="relu0")
    assert fast_prelu_symbol(sym, SHAPE) is sym


def test_shape_errors_name_the_input_shape(graphs):
    native, _, _ = graphs
    with pytest.raises(ValueError, match=r"input shape \(1, 3, 24\)"):
        fast_prelu_symbol(native, (1, 3, 24))
    with pytest.raises(ValueError, match="no input 'image'"):
        fast_prelu_symbol(native, SHAPE, input_name="image")


def test_graph_engine_runs_the_fast_form(tmp_path, caplog):
    """A 2018-style graph of no zoo network: its 5 PReLU layers become fast, the embedding stays bit-equal."""
    batch = mx.nd.array(np.random.default_rng(2).uniform(0, 255, (2, 3, 112, 112)))
    prefix = str(tmp_path / "odd")
    random_checkpoint(legacy_resnet((1, 1, 1, 1), 16, filters=(8, 8, 16, 16, 16)), prefix, batch)
    caplog.set_level(logging.INFO)
    fast = load_embedding_model(prefix, 1, engine="mxnet")
    assert fast.engine == "graph" and "5 of 5 PReLU layers of its graph run in the fast form" in caplog.text
    assert count_prelu(fast.block(mx.sym.var("data"))) == 0
    native = load_embedding_model(prefix, 1, engine="graph", fast_prelu=False)
    assert count_prelu(native.block(mx.sym.var("data"))) == 5
    for model in (fast, native):
        model.block.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_array_equal(fast.block(batch).asnumpy(), native.block(batch).asnumpy())
