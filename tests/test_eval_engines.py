"""Evaluation engines: a checkpoint's graph, its zoo network and onnxruntime give the same results."""
import logging
import os

import cv2
import numpy as np
import onnx
import pytest

mx = pytest.importorskip("mxnet")

from _datautil import legacy_y1, make_tiny_bin, tiny_face  # noqa: E402
from insightgluon.cli import main as cli_main  # noqa: E402
from insightgluon.errors import ConfigError  # noqa: E402
from insightgluon.eval.embed import embed_images  # noqa: E402
from insightgluon.export import export_onnx  # noqa: E402
from insightgluon.export.deploy import save_checkpoint  # noqa: E402
from insightgluon.engines.onnxruntime import OnnxEmbedding  # noqa: E402
from insightgluon.engines import load_embedding_model  # noqa: E402

SIZE = 112


@pytest.fixture(scope="module")
def y1(tmp_path_factory):
    """A 2018-style MobileFaceNet checkpoint (``LeakyReLU`` PReLU): graph, zoo network y1 and ONNX.

    The BatchNorm statistics are those of the test faces, so embeddings differ between
    identities and the accuracy is neither 0.5 nor 1.
    """
    return legacy_y1(str(tmp_path_factory.mktemp("y1") / "model"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A graph of no zoo network with PReLU on maps and after a dense layer."""
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Convolution(x, num_filter=8, kernel=(5, 5), stride=(4, 4), name="conv0")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="relu0")
    x = mx.sym.Pooling(x, kernel=(4, 4), stride=(4, 4), pool_type="avg", name="pool0")
    x = mx.sym.LeakyReLU(mx.sym.FullyConnected(x, num_hidden=24, name="fc0"), act_type="prelu", name="relu1")
    out = mx.sym.FullyConnected(x, num_hidden=16, name="fc1")
    rng = np.random.default_rng(0)
    shapes, _, _ = out.infer_shape(data=(1, 3, SIZE, SIZE))
    params = {k: mx.nd.array(rng.uniform(-0.5, 0.5, s) if k.endswith("gamma") else rng.normal(0, 0.1, s))
              for k, s in zip(out.list_arguments(), shapes) if k != "data"}
    prefix = str(tmp_path_factory.mktemp("small") / "net")
    save_checkpoint(prefix, 1, out, params)
    return prefix


def test_verify_lines_agree_across_engines(y1, tmp_path, capsys, caplog):
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=12)
    caplog.set_level(logging.INFO)
    lines = {}
    for engine in ("graph", "zoo", "onnxruntime", "openvino"):
        assert cli_main(["verify", "--model", f"{y1},1", "--data-dir", str(tmp_path), "--target", "lfw",
                         "--nfolds", "3", "--batch-size", "8", "--engine", engine]) == 0
        lines[engine] = capsys.readouterr().out.strip().splitlines()
    assert "runs as onnxruntime on the ONNX export of zoo network y1 (emb_size=64)" in caplog.text
    assert "33 of 33 PReLU layers of its graph run in the fast form" in caplog.text
    xnorm = {engine: float(out[0].split(": ")[1]) for engine, out in lines.items()}
    assert lines["graph"][0].startswith("[lfw]XNorm:")
    assert xnorm["zoo"] == pytest.approx(xnorm["graph"], rel=1e-4)
    assert xnorm["onnxruntime"] == pytest.approx(xnorm["graph"], rel=1e-4)
    accuracy = next(float(line.split()[1].split("+-")[0]) for line in lines["graph"]
                    if line.startswith("[lfw]Accuracy-Flip: "))
    assert 0.5 < accuracy < 1.0
    assert xnorm["openvino"] == pytest.approx(xnorm["graph"], rel=1e-4)
    assert lines["zoo"][1:] == lines["graph"][1:]
    assert lines["onnxruntime"][1:] == lines["graph"][1:]
    assert lines["openvino"][1:] == lines["graph"][1:]


def test_onnxruntime_engine_is_called_like_a_block(small):
    graph = load_embedding_model(small, 1, engine="mxnet")
    model = load_embedding_model(small, 1, engine="onnxruntime")
    assert isinstance(model.block, OnnxEmbedding) and model.engine == "onnxruntime"
    assert model.describe() == "onnxruntime on the ONNX export of the checkpoint's own graph"
    model.block.hybridize(static_alloc=True, static_shape=True)
    batch = mx.nd.array(np.random.default_rng(1).uniform(0, 255, (3, 3, SIZE, SIZE)))
    got, want = model.block(batch), graph.block(batch).asnumpy()
    assert isinstance(got, mx.nd.NDArray) and got.shape == (3, 16)
    np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    faces = np.stack([tiny_face(k, size=SIZE) for k in range(5)])
    np.testing.assert_allclose(embed_images(model.block, faces, batch_size=2)[0],
                               embed_images(graph.block, faces, batch_size=2)[0], atol=1e-6)
    with pytest.raises(ConfigError, match="onnxruntime runs on the CPU"):
        load_embedding_model(small, 1, engine="onnxruntime", ctx=[mx.cpu(), mx.gpu(0)])


def test_fast_prelu_export_has_no_prelu_operator(small, tmp_path):
    native, fast = str(tmp_path / "native.onnx"), str(tmp_path / "fast.onnx")
    export_onnx(small, 1, native)
    assert export_onnx(small, 1, fast, fast_prelu=True).passed
    ops = {path: {node.op_type for node in onnx.load(path).graph.node} for path in (native, fast)}
    assert "PRelu" in ops[native] and "PRelu" not in ops[fast]
    onnx.checker.check_model(onnx.load(fast), full_check=True)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(OnnxEmbedding(fast)(pixels), OnnxEmbedding(native)(pixels),
                               rtol=1e-5, atol=1e-6)


def test_face_and_megaface_take_the_engine(small, tmp_path, capsys):
    folder = tmp_path / "people"
    for person in range(3):
        os.makedirs(folder / f"id{person}")
        for k in range(3):
            cv2.imwrite(str(folder / f"id{person}" / f"{k}.png"), tiny_face(person, k, SIZE)[:, :, ::-1])
    pair = [str(folder / "id0" / "0.png"), str(folder / "id0" / "1.png")]
    out = {}
    for engine in ("graph", "onnxruntime", "openvino"):
        assert cli_main(["face", "verify", *pair, "--model", f"{small},1", "--aligned",
                         "--engine", engine]) == 0
        assert cli_main(["megaface", "identify", "--model", f"{small},1", "--data", str(folder),
                         "--engine", engine]) == 0
        out[engine] = capsys.readouterr().out.splitlines()
    assert out["graph"][0].startswith("similarity ") and "rank-1: " in out["graph"][2]
    assert out["onnxruntime"] == out["graph"]
    assert out["openvino"] == out["graph"]
