"""Each MXNet 1.9.1 exporter defect on the smallest graph that triggers it: wrong without the fix, right with it."""
import numpy as np
import onnx
import pytest

mx = pytest.importorskip("mxnet")

from insightgluon.errors import CheckpointError, ConfigError  # noqa: E402
from insightgluon.export import ParityError, export_onnx, fixes, read_metadata  # noqa: E402
from insightgluon.export.deploy import save_checkpoint  # noqa: E402
from insightgluon.export.onnx import onnx_session  # noqa: E402

SIZE = 112


def make_checkpoint(tmp_path, out, name="m", seed=0, size=SIZE):
    """Save ``out`` (a symbol on input ``data``) with random weights; returns the prefix."""
    rng = np.random.default_rng(seed)
    args, _, auxs = out.infer_shape(data=(1, 3, size, size))
    params = {}
    for key, shape in zip(out.list_arguments(), args):
        if key != "data":
            params[key] = mx.nd.array(rng.uniform(-0.2, 0.6, shape))
    for key, shape in zip(out.list_auxiliary_states(), auxs):
        params[key] = mx.nd.array(rng.uniform(0.5, 1.5, shape))
    prefix = str(tmp_path / name)
    save_checkpoint(prefix, 1, out, params)
    return prefix


def stem(channels=8, stride=4):
    """Normalise raw pixels and one strided convolution (keeps maps small)."""
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    return mx.sym.Convolution(x, num_filter=channels, kernel=(3, 3), stride=(stride, stride),
                              pad=(1, 1), no_bias=True, name="conv0")


def without(monkeypatch, fix):
    """Disable one fix for the rest of the test."""
    if fix in fixes.SYMBOL_FIXES:
        monkeypatch.setattr(fixes, "SYMBOL_FIXES", tuple(f for f in fixes.SYMBOL_FIXES if f is not fix))
    else:
        monkeypatch.setattr(fixes, "ONNX_FIXES", tuple(f for f in fixes.ONNX_FIXES if f is not fix))


def test_fc_without_flatten_attribute(tmp_path, monkeypatch):
    out = mx.sym.FullyConnected(stem(), num_hidden=8, name="fc1")
    prefix = make_checkpoint(tmp_path, out)
    assert "flatten" not in out.tojson().split('"FullyConnected"')[1].split("}")[0]
    report = export_onnx(prefix, 1, str(tmp_path / "ok.onnx"))
    assert report.passed and report.emb_size == 8
    without(monkeypatch, fixes.fc_flatten_explicit)
    with pytest.raises(CheckpointError):
        export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))
    assert not (tmp_path / "bad.onnx").exists()


def test_batchnorm_fix_gamma(tmp_path, monkeypatch):
    x = mx.sym.FullyConnected(stem(), num_hidden=8, flatten=True, name="pre_fc1")
    prefix = make_checkpoint(tmp_path, mx.sym.BatchNorm(x, fix_gamma=True, name="fc1"))
    assert export_onnx(prefix, 1, str(tmp_path / "ok.onnx")).max_rel < 1e-5
    without(monkeypatch, fixes.fixed_gamma_to_one)
    with pytest.raises(ParityError, match="rel diff"):
        export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))


@pytest.mark.parametrize("channels, expected", [(8, CheckpointError), (28, ParityError)],
                         ids=["broadcast-error", "silently-wrong"])
def test_prelu_per_channel_slope(tmp_path, monkeypatch, channels, expected):
    # A 112 input with stride 4 gives 28x28 maps: with 28 channels a (C,) slope
    # broadcasts along the width and runs, but computes the wrong function.
    x = mx.sym.LeakyReLU(stem(channels), act_type="prelu", name="relu0")
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(x, num_hidden=4, flatten=True,
                                                             name="fc1"))
    assert export_onnx(prefix, 1, str(tmp_path / "ok.onnx")).passed
    slope = next(i for i in onnx.load(str(tmp_path / "ok.onnx")).graph.initializer
                 if i.name == "relu0_gamma")
    assert list(slope.dims) == [channels, 1, 1]
    without(monkeypatch, fixes.prelu_slope_rank)
    with pytest.raises(expected):
        export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))


def test_prelu_after_fully_connected_keeps_vector_slope(tmp_path):
    x = mx.sym.FullyConnected(stem(), num_hidden=6, flatten=True, name="pre")
    prefix = make_checkpoint(tmp_path, mx.sym.LeakyReLU(x, act_type="prelu", name="fc1"))
    assert export_onnx(prefix, 1, str(tmp_path / "ok.onnx")).passed
    slope = next(i for i in onnx.load(str(tmp_path / "ok.onnx")).graph.initializer
                 if i.name == "fc1_gamma")
    assert list(slope.dims) == [6]


def test_l2normalization_exports_the_tensor_before_it(tmp_path):
    emb = mx.sym.FullyConnected(stem(), num_hidden=8, flatten=True, name="fc1")
    out = mx.sym.L2Normalization(emb, mode="instance", name="norm")
    prefix = make_checkpoint(tmp_path, out)
    symbol, params = mx.sym.load(prefix + "-symbol.json"), {}
    with pytest.raises(AttributeError, match="channel mode only"):
        import mxnet.onnx as mx_onnx

        params = {k.split(":")[1]: v for k, v in mx.nd.load(prefix + "-0001.params").items()}
        mx_onnx.export_model(symbol, params, in_shapes=[(1, 3, SIZE, SIZE)],
                             onnx_file_path=str(tmp_path / "raw.onnx"))
    report = export_onnx(prefix, 1, str(tmp_path / "ok.onnx"), layer="norm")
    assert report.passed and read_metadata(str(tmp_path / "ok.onnx"))["layer"] == "fc1"
    inner = mx.sym.L2Normalization(mx.sym.Activation(out, act_type="relu", name="act"),
                                   name="norm2")
    prefix2 = make_checkpoint(tmp_path, mx.sym.FullyConnected(inner, num_hidden=4, name="top"),
                              name="inner")
    with pytest.raises(CheckpointError, match="L2Normalization 'norm' inside"):
        export_onnx(prefix2, 1, str(tmp_path / "inner.onnx"), layer="top")


def test_initializers_are_not_graph_inputs(tmp_path, monkeypatch):
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(stem(), num_hidden=4, flatten=True,
                                                             name="fc1"))
    export_onnx(prefix, 1, str(tmp_path / "ok.onnx"))
    model = onnx.load(str(tmp_path / "ok.onnx"))
    assert [i.name for i in model.graph.input] == ["data"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].dim_value and [d.dim_value for d in dims[1:]] == [3, SIZE, SIZE]
    without(monkeypatch, fixes.drop_initializer_inputs)
    export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))
    assert {"conv0_weight", "fc1_weight"} <= {i.name for i in onnx.load(str(tmp_path / "bad.onnx")).graph.input}


def test_opset_pinned_to_node_style(tmp_path, monkeypatch):
    # mean over the spatial axes becomes ReduceMean with an 'axes' attribute: opset 13 only.
    pooled = mx.sym.mean(stem(), axis=(2, 3), name="gap")
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(pooled, num_hidden=4, flatten=True,
                                                             name="fc1"))
    export_onnx(prefix, 1, str(tmp_path / "ok.onnx"))
    model = onnx.load(str(tmp_path / "ok.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    onnx.checker.check_model(model, full_check=True)
    without(monkeypatch, fixes.pin_opset)
    with pytest.raises(CheckpointError, match="ONNX checker"):
        export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))


def test_insightface_names_for_gluon_style_graph(tmp_path, monkeypatch):
    # A Gluon export prefixes node names (net0__minusscalar0): insightface misses them.
    data = mx.sym.var("data")
    x = mx.sym._internal._minus_scalar(data, scalar=127.5, name="net0__minusscalar0")
    x = mx.sym._internal._mul_scalar(x, scalar=0.0078125, name="net0__mulscalar0")
    x = mx.sym.Convolution(x, num_filter=4, kernel=(3, 3), stride=(4, 4), name="net0_conv0")
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(x, num_hidden=4, flatten=True,
                                                             name="fc1"))
    export_onnx(prefix, 1, str(tmp_path / "ok.onnx"))
    model = onnx.load(str(tmp_path / "ok.onnx"))
    assert [n.name for n in model.graph.node[:2]] == [fixes.SUB_NODE_NAME, fixes.MUL_NODE_NAME]
    assert fixes.insightface_normalises_inside(model)
    without(monkeypatch, fixes.mark_input_normalisation)
    export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))
    assert not fixes.insightface_normalises_inside(onnx.load(str(tmp_path / "bad.onnx")))


def test_raw_input_batchnorm_gets_noop_markers(tmp_path):
    x = mx.sym.BatchNorm(mx.sym.var("data"), fix_gamma=True, name="bn_data")
    x = mx.sym.Convolution(x, num_filter=4, kernel=(3, 3), stride=(4, 4), name="conv0")
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(x, num_hidden=4, flatten=True,
                                                             name="fc1"))
    assert export_onnx(prefix, 1, str(tmp_path / "ok.onnx")).passed
    assert fixes.insightface_normalises_inside(onnx.load(str(tmp_path / "ok.onnx")))


def test_dynamic_batch_and_metadata(tmp_path):
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(stem(), num_hidden=4, flatten=True,
                                                             name="fc1"))
    path = str(tmp_path / "m.onnx")
    export_onnx(prefix, 1, path, metadata={"threshold_cos": 0.25})
    session = onnx_session(path)
    for batch in (1, 5):
        assert session.run(None, {"data": np.zeros((batch, 3, SIZE, SIZE), np.float32)})[0].shape == (batch, 4)
    meta = read_metadata(path)
    assert meta["emb_size"] == "4" and meta["threshold_cos"] == "0.25"
    assert meta["source"].endswith("m,1") and meta["image_size"] == "112x112"


def test_bad_inputs(tmp_path):
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(stem(), num_hidden=4, flatten=True,
                                                             name="fc1"))
    with pytest.raises(CheckpointError, match=r"m-0002.params: no such checkpoint file"):
        export_onnx(prefix, 2, str(tmp_path / "x.onnx"))
    with pytest.raises(CheckpointError, match="no layer 'fc9'"):
        export_onnx(prefix, 1, str(tmp_path / "x.onnx"), layer="fc9")
    with pytest.raises(CheckpointError, match="expected \\(1, D\\)"):
        export_onnx(prefix, 1, str(tmp_path / "x.onnx"), layer="conv0")
    with pytest.raises(ConfigError, match="too small to export"):
        export_onnx(prefix, 1, str(tmp_path / "x.onnx"), image_size=(112, 8))
    (tmp_path / "junk-symbol.json").write_text("{not json")
    (tmp_path / "junk-0001.params").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="junk-symbol.json: not a readable MXNet symbol"):
        export_onnx(str(tmp_path / "junk"), 1, str(tmp_path / "x.onnx"))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="bad.onnx: not a readable ONNX model"):
        read_metadata(str(tmp_path / "bad.onnx"))


def test_unused_initializers_are_pruned(tmp_path, monkeypatch):
    # slope * 1 on a parameter is folded by the exporter into a new initializer.
    x = stem()
    slope = mx.sym.var("scale_gamma", shape=(8,))
    x = mx.sym.broadcast_mul(x, mx.sym.reshape(slope * 1.0, shape=(1, -1, 1, 1)))
    prefix = make_checkpoint(tmp_path, mx.sym.FullyConnected(x, num_hidden=4, flatten=True,
                                                             name="fc1"))
    assert export_onnx(prefix, 1, str(tmp_path / "ok.onnx")).passed
    model = onnx.load(str(tmp_path / "ok.onnx"))
    used = {name for node in model.graph.node for name in node.input}
    assert all(init.name in used for init in model.graph.initializer)
    without(monkeypatch, fixes.prune_unused_initializers)
    export_onnx(prefix, 1, str(tmp_path / "bad.onnx"))
    assert "scale_gamma" in {i.name for i in onnx.load(str(tmp_path / "bad.onnx")).graph.initializer}
