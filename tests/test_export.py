"""ONNX export end to end: face-net-shaped graphs, insightface as consumer, fc7 stripping, the CLI."""
import json

import cv2
import numpy as np
import onnx
import pytest

mx = pytest.importorskip("mxnet")

from insightgluon.errors import CheckpointError, ConfigError  # noqa: E402
from insightgluon.export import export_onnx, read_metadata, strip_fc7  # noqa: E402
from insightgluon.export.deploy import (read_checkpoint_metadata, save_checkpoint,  # noqa: E402
                                        threshold_at_far)
from insightgluon.export.onnx import onnx_session  # noqa: E402
from insightgluon.model_io import load_symbol_block  # noqa: E402

SIZE = 112


def conv_bn_prelu(x, name, channels, stride=1, group=1):
    x = mx.sym.Convolution(x, num_filter=channels, kernel=(3, 3), stride=(stride, stride),
                           pad=(1, 1), num_group=group, no_bias=True, name=f"{name}_conv2d")
    x = mx.sym.BatchNorm(x, fix_gamma=False, eps=2e-5, momentum=0.9, name=f"{name}_batchnorm")
    return mx.sym.LeakyReLU(x, act_type="prelu", name=f"{name}_relu")


def legacy_face_graph(emb_size=16, num_classes=10):
    """A 2018-style training graph: the layer types of y1 and r18 (depthwise and
    residual units, PReLU, the E output block, fc1 with fix_gamma) plus fc7 and softmax."""
    data = mx.sym.var("data")
    x = mx.sym._internal._minus_scalar(data, scalar=127.5, name="_minusscalar0")
    x = mx.sym._internal._mul_scalar(x, scalar=0.0078125, name="_mulscalar0")
    x = conv_bn_prelu(x, "conv_1", 8, stride=4)
    x = conv_bn_prelu(x, "conv_2_dw", 8, group=8)
    unit = conv_bn_prelu(x, "stage1_unit1", 8)
    x = x + mx.sym.BatchNorm(unit, fix_gamma=False, name="stage1_unit1_bn3")
    x = conv_bn_prelu(x, "conv_3", 16, stride=4)
    x = mx.sym.BatchNorm(x, fix_gamma=False, name="bn1")
    x = mx.sym.Dropout(x, p=0.4)
    x = mx.sym.FullyConnected(x, num_hidden=emb_size, name="pre_fc1")
    emb = mx.sym.BatchNorm(x, fix_gamma=True, eps=2e-5, name="fc1")
    logits = mx.sym.FullyConnected(emb, num_hidden=num_classes, no_bias=True, name="fc7")
    return mx.sym.SoftmaxOutput(logits, name="softmax")


def save_random(prefix, symbol, seed=0):
    rng = np.random.default_rng(seed)
    args, _, auxs = symbol.infer_shape(data=(1, 3, SIZE, SIZE))
    params = {k: mx.nd.array(rng.normal(0.3, 0.4, s)) for k, s in zip(symbol.list_arguments(), args)
              if k not in ("data", "softmax_label")}
    params.update({k: mx.nd.array(rng.uniform(0.5, 1.5, s))
                   for k, s in zip(symbol.list_auxiliary_states(), auxs)})
    save_checkpoint(prefix, 3, symbol, params)
    return prefix


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    return save_random(str(tmp_path_factory.mktemp("legacy") / "model"), legacy_face_graph())


@pytest.fixture(scope="module")
def exported(legacy, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("onnx") / "model.onnx")
    return path, export_onnx(legacy, 3, path)


def mxnet_embedding(prefix, epoch, rgb_nhwc):
    block = load_symbol_block(prefix, epoch)
    return block(mx.nd.array(rgb_nhwc.transpose(0, 3, 1, 2).astype(np.float32))).asnumpy()


def test_legacy_graph_parity(exported):
    path, report = exported
    assert report.passed and report.max_rel < 1e-4 and report.emb_size == 16
    model = onnx.load(path)
    assert len(model.graph.output) == 1 and [i.name for i in model.graph.input] == ["data"]
    onnx.checker.check_model(model, full_check=True)
    assert not any(node.op_type == "Softmax" or "fc7" in node.name for node in model.graph.node)


def test_insightface_gets_arcface_with_raw_pixels(exported, legacy):
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    path, _ = exported
    model = get_model(path, providers=["CPUExecutionProvider"])
    assert isinstance(model, ArcFaceONNX)
    assert (model.input_mean, model.input_std) == (0.0, 1.0)
    rgb = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    bgr = [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in rgb]
    got = model.get_feat(bgr)
    expected = mxnet_embedding(legacy, 3, rgb)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert model.compute_sim(got[0], got[1]) == pytest.approx(
        float(expected[0] @ expected[1] / np.linalg.norm(expected, axis=1).prod()), abs=1e-4)


def test_strip_fc7(legacy, tmp_path):
    sym_file, params_file = strip_fc7(legacy, 3, str(tmp_path / "slim"))
    saved = mx.nd.load(params_file)
    assert not any("fc7" in key for key in saved) and "arg:fc1_gamma" in saved
    assert "aux:fc1_moving_var" in saved
    graph = json.load(open(sym_file))
    assert graph["nodes"][-1]["name"] == "fc1" and "softmax" not in open(sym_file).read()
    rgb = np.random.default_rng(2).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_array_equal(mxnet_embedding(str(tmp_path / "slim"), 3, rgb),
                                  mxnet_embedding(legacy, 3, rgb))
    assert export_onnx(str(tmp_path / "slim"), 3, str(tmp_path / "slim.onnx")).passed
    with pytest.raises(CheckpointError, match="no layer 'fc8'"):
        strip_fc7(legacy, 3, str(tmp_path / "x"), layer="fc8")


def test_threshold_at_far_matches_its_definition():
    rng = np.random.default_rng(0)
    pairs, dim = 200, 8
    base = rng.normal(size=(pairs, dim))
    issame = np.arange(pairs) % 2 == 0
    other = np.where(issame[:, None], base + 0.4 * rng.normal(size=(pairs, dim)),
                     rng.normal(size=(pairs, dim)))
    emb = np.empty((2 * pairs, dim))
    emb[0::2], emb[1::2] = base, other
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    values = threshold_at_far(emb, issame, far=0.05)
    cos = np.sum(emb[0::2].astype(np.float64) * emb[1::2], axis=1)
    accepted = cos > values["threshold_cos"]
    assert np.mean(accepted[~issame]) <= 0.05 and values["far_measured"] <= 0.05
    assert np.mean(accepted[~issame]) == 0.05 and values["tar"] == np.mean(accepted[issame])
    assert values["tar"] <= values["tar_at_far_eval"]
    with pytest.raises(ConfigError, match="cannot measure FAR 0.001"):
        threshold_at_far(emb, issame, far=1e-3, source="tiny.bin")


def test_cli_export_with_calibration_and_strip(legacy, tmp_path, capsys):
    from insightgluon.cli import main
    from insightgluon.data.bin import save_bin
    from insightgluon.data.image import encode_jpeg

    rng = np.random.default_rng(3)
    faces = rng.integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    order = [0, 0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 1, 5, 2, 8, 4, 7]
    bins = [encode_jpeg(faces[i]) for i in order]
    bin_path = str(tmp_path / "val.bin")
    save_bin(bin_path, bins, [a == b for a, b in zip(order[0::2], order[1::2])])
    out = str(tmp_path / "cal.onnx")
    assert main(["export", "--model", f"{legacy},3", "--output", out,
                 "--calibrate-bin", bin_path, "--far", "0.2", "--batch-size", "8"]) == 0
    text = capsys.readouterr().out
    assert "threshold_cos" in text and "parity" in text and "ok" in text
    meta = read_metadata(out)
    assert -1.0 <= float(meta["threshold_cos"]) <= 1.0 and meta["far"] == "0.2"
    assert meta["calibration_bin"] == "val.bin"
    slim = str(tmp_path / "slim")
    assert main(["export", "--model", f"{legacy},3", "--strip-fc7", slim,
                 "--calibrate-bin", bin_path, "--far", "0.2"]) == 0
    assert read_checkpoint_metadata(slim, 3)["threshold_cos"] == meta["threshold_cos"]
    assert main(["export", "--model", f"{legacy},9", "--output", out]) == 2
    assert main(["export", "--model", f"{legacy},3", "--output", out,
                 "--calibrate-bin", bin_path, "--far", "1e-3"]) == 2
    with pytest.raises(SystemExit):
        main(["export", "--model", f"{legacy},3"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["y1", "r18"])
def test_zoo_network_export(name, tmp_path):
    networks = pytest.importorskip("insightgluon.networks")
    if not hasattr(networks, "get_network"):
        pytest.skip("network zoo not available")
    net = networks.get_network(name, emb_size=128)
    net.initialize()
    x = mx.nd.random.uniform(0, 255, shape=(1, 3, SIZE, SIZE))
    net(x)
    rng = np.random.default_rng(0)
    for key, param in net.collect_params().items():
        # Non-trivial statistics and scales, so a dropped gamma or mean would show.
        if key.endswith(("_gamma", "_moving_var")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif key.endswith(("_beta", "_moving_mean")):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, param.shape)))
    prefix = str(tmp_path / name)
    # Block.export would save MKLDNN-layout arrays, which nd.save rejects: copy via numpy.
    params = {key: mx.nd.array(p.data().asnumpy()) for key, p in net.collect_params().items()}
    save_checkpoint(prefix, 1, net(mx.sym.var("data")), params)
    report = export_onnx(prefix, 1, str(tmp_path / f"{name}.onnx"))
    assert report.passed and report.max_rel < 1e-4 and report.emb_size == 128
    model = onnx.load(str(tmp_path / f"{name}.onnx"))
    from insightgluon.export.fixes import insightface_normalises_inside

    assert insightface_normalises_inside(model)
    session = onnx_session(str(tmp_path / f"{name}.onnx"))
    assert session.run(None, {"data": x.asnumpy()})[0].shape == (1, 128)
