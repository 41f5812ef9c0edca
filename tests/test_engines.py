"""Engines behind one interface: every engine, every kind of model file, the same embedding.

The reference is the MXNet zoo network (float32). Checked: a zoo checkpoint, a graph of no
zoo network, its ONNX export and its OpenVINO IR on every engine that takes them; ``auto``'s
choice and its fall-back when OpenVINO is missing or fails its probe; the IR export refusing a
corrupted ``.bin``.
"""
import logging
import os
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
pytest.importorskip("openvino")

from _datautil import legacy_y1, make_tiny_bin, tiny_face  # noqa: E402
from insightgluon.cli import main as cli_main  # noqa: E402
from insightgluon.engines import AUTO_ORDER, engine_choices, load_embedding_model, model_source  # noqa: E402
from insightgluon.engines.base import FLOAT32_TOLERANCE, probe_batch  # noqa: E402
from insightgluon.errors import CheckpointError, ConfigError  # noqa: E402
from insightgluon.export import ParityError  # noqa: E402
from insightgluon.export import openvino as ov_export  # noqa: E402
from insightgluon.export.deploy import save_checkpoint  # noqa: E402
from insightgluon.precision import BF16_CPU_FLAGS, cpu_flags  # noqa: E402

needs_bf16 = pytest.mark.skipif(not set(BF16_CPU_FLAGS) & cpu_flags(), reason="no bfloat16 instructions")
SIZE = 112


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A MobileFaceNet checkpoint (2018 ``LeakyReLU`` PReLU), its ONNX export and its OpenVINO IR."""
    root = tmp_path_factory.mktemp("engines")
    prefix = legacy_y1(str(root / "y1"), emb_size=32, seed=1, passes=10)
    assert cli_main(["export", "--model", f"{prefix},1", "--output", str(root / "y1.onnx")]) == 0
    assert cli_main(["export", "--model", f"{prefix},1", "--format", "openvino",
                     "--output", str(root / "y1.xml")]) == 0
    return {"checkpoint": f"{prefix},1", "onnx": str(root / "y1.onnx"), "ir": str(root / "y1.xml")}


@pytest.fixture(scope="module")
def pixels():
    return probe_batch((SIZE, SIZE), count=3, seed=5)


@pytest.fixture(scope="module")
def reference(files, pixels):
    model = load_embedding_model(files["checkpoint"], engine="zoo")
    return model.block(mx.nd.array(pixels)).asnumpy()


def embed(model, pixels):
    out = model.block(pixels if getattr(model.block, "runs_on_host", False) else mx.nd.array(pixels))
    return out.asnumpy() if hasattr(out, "asnumpy") else np.asarray(out)


def close(got, want, tolerance=FLOAT32_TOLERANCE):
    return float(np.abs(got - want).max()) <= tolerance * float(np.abs(want).max())


# (engine mxnet is zoo here, and auto on a checkpoint is openvino: both are checked in the tests below)
CASES = [("checkpoint", e) for e in ("zoo", "graph", "onnxruntime", "openvino")] + \
        [("onnx", "onnxruntime"), ("onnx", "openvino"), ("onnx", "auto"), ("ir", "openvino"), ("ir", "auto")]


@pytest.mark.parametrize("kind,engine", CASES)
def test_every_engine_gives_the_zoo_networks_embedding(files, reference, pixels, kind, engine):
    model = load_embedding_model(files[kind], engine=engine)
    assert model.engine == {"auto": "openvino"}.get(engine, engine)
    assert model.image_hw == (SIZE, SIZE) and model.dtype == "float32"
    assert close(embed(model, pixels), reference)


def test_describe_says_what_runs(files):
    ov = load_embedding_model(files["checkpoint"], engine="openvino")
    assert ov.describe() == "openvino on the ONNX export of zoo network y1 (emb_size=32)"
    assert ov.network == "y1" and ov.parity is not None and ov.parity <= FLOAT32_TOLERANCE
    assert load_embedding_model(files["ir"]).describe() == f"openvino on {files['ir']}"


def test_a_graph_of_no_zoo_network_runs_on_every_engine(tmp_path, pixels):
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Convolution(x, num_filter=8, kernel=(5, 5), stride=(4, 4), name="conv0")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="relu0")
    x = mx.sym.Pooling(x, kernel=(4, 4), stride=(4, 4), pool_type="avg", name="pool0")
    out = mx.sym.FullyConnected(x, num_hidden=16, name="fc1")
    rng = np.random.default_rng(0)
    shapes, _, _ = out.infer_shape(data=(1, 3, SIZE, SIZE))
    params = {k: mx.nd.array(rng.normal(0, 0.1, s)) for k, s in zip(out.list_arguments(), shapes) if k != "data"}
    save_checkpoint(str(tmp_path / "odd"), 1, out, params)
    want = embed(load_embedding_model(str(tmp_path / "odd"), 1, engine="graph", fast_prelu=False), pixels)
    for engine in ("graph", "mxnet", "onnxruntime", "openvino"):
        model = load_embedding_model(str(tmp_path / "odd"), 1, engine=engine)
        assert model.network == "" and close(embed(model, pixels), want), engine
    assert load_embedding_model(str(tmp_path / "odd"), 1).describe() == \
        "openvino on the ONNX export of the checkpoint's own graph"


@needs_bf16
@pytest.mark.parametrize("kind", ["checkpoint", "onnx", "ir"])
def test_openvino_bf16_stays_near_fp32(files, reference, pixels, kind):
    model = load_embedding_model(files[kind], engine="auto", dtype="bfloat16")
    assert (model.engine, model.dtype) == ("openvino", "bfloat16") and "openvino in bfloat16" in model.describe()
    assert model.parity >= 0.995
    got = embed(model, pixels)
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() > 0.99 and not close(got, reference, 1e-6)  # really computed in bfloat16


def test_auto_falls_back_when_openvino_is_missing(files, monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # "import openvino" now raises ImportError
    caplog.set_level(logging.INFO)
    model = load_embedding_model(files["checkpoint"])
    assert model.engine == "onnxruntime"
    assert "engine auto skips openvino (OpenVINO is not importable here" in caplog.text
    assert "engine auto chose onnxruntime" in caplog.text
    assert load_embedding_model(files["onnx"]).engine == "onnxruntime"
    with pytest.raises(ConfigError, match="OpenVINO is not importable here"):
        load_embedding_model(files["ir"])
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=4)
    caplog.clear()
    assert cli_main(["verify", "--model", files["checkpoint"], "--data-dir", str(tmp_path), "--target", "lfw",
                     "--nfolds", "2", "--engine", "openvino"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "OpenVINO is not importable here" in errors[0] and "\n" not in errors[0]


def test_auto_skips_an_engine_failing_its_probe(files, monkeypatch, caplog):
    from insightgluon.engines.openvino import OpenVinoEmbedding

    real = OpenVinoEmbedding.__call__
    monkeypatch.setattr(OpenVinoEmbedding, "__call__", lambda self, batch: real(self, batch) * 1.01)
    caplog.set_level(logging.INFO)
    assert load_embedding_model(files["checkpoint"]).engine == "onnxruntime"
    assert "OpenVINO float32 differs from MXNet: max rel diff 0.01" in caplog.text
    with pytest.raises(ParityError, match="OpenVINO float32 differs from onnxruntime"):
        load_embedding_model(files["onnx"], engine="openvino")


def test_auto_in_bfloat16_without_openvino_bf16_takes_mxnet(files, monkeypatch):
    from insightgluon.engines import openvino as ov_engine

    monkeypatch.setattr(ov_engine, "capabilities", lambda: ("FP32",))
    if not set(BF16_CPU_FLAGS) & cpu_flags():
        pytest.skip("no bfloat16 instructions")
    model = load_embedding_model(files["checkpoint"], dtype="bfloat16")
    assert (model.engine, model.dtype) == ("zoo", "bfloat16")
    with pytest.raises(ConfigError, match="this CPU has no BF16 support"):
        load_embedding_model(files["checkpoint"], engine="openvino", dtype="bfloat16")


def test_engine_names_and_sources(files, tmp_path):
    assert set(engine_choices()) == {"auto", "zoo", "graph", "mxnet", "onnxruntime", "openvino"}
    assert AUTO_ORDER["checkpoint"][0] == "openvino" and AUTO_ORDER["openvino-ir"] == ("openvino",)
    assert model_source(files["ir"]).files == (files["ir"], files["ir"][:-4] + ".bin")
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'; choose one of: graph, mxnet"):
        load_embedding_model(files["checkpoint"], engine="tensorrt")
    with pytest.raises(ConfigError, match="onnxruntime runs ONNX files and checkpoints, not OpenVINO IR"):
        load_embedding_model(files["ir"], engine="onnxruntime")
    with pytest.raises(ConfigError, match="MXNet engines run checkpoints"):
        load_embedding_model(files["onnx"], engine="zoo")
    with pytest.raises(CheckpointError, match="nothing.xml: no such model file"):
        load_embedding_model(str(tmp_path / "nothing.xml"))
    os.remove(str(tmp_path / "x.bin")) if os.path.exists(str(tmp_path / "x.bin")) else None
    (tmp_path / "x.xml").write_text(open(files["ir"]).read())
    with pytest.raises(CheckpointError, match=r"x\.bin: no such model file"):
        load_embedding_model(str(tmp_path / "x.xml"))


def test_ir_carries_the_metadata_and_says_how_weights_are_stored(files, tmp_path, capsys):
    meta = ov_export.metadata(ov_export.read_model(files["ir"]))
    assert meta["network"] == "zoo network y1 (emb_size=32)" and meta["ir_weights"] == "float32"
    assert meta["source"].endswith("y1,1") and len(meta["weights_sha256"]) == 64
    half = str(tmp_path / "half.xml")
    assert cli_main(["export", "--model", files["checkpoint"], "--output", half, "--ir-weights", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "parity OpenVINO f32 vs MXNet" in out and "(tolerance 0.01) ok" in out
    assert "weights stored in float16" in out
    assert os.path.getsize(half[:-4] + ".bin") < 0.6 * os.path.getsize(files["ir"][:-4] + ".bin")


def test_a_corrupted_bin_is_refused(files, tmp_path, reference, pixels):
    xml, weights = str(tmp_path / "c.xml"), str(tmp_path / "c.bin")
    with open(files["ir"]) as src, open(xml, "w") as dst:
        dst.write(src.read())
    data = bytearray(open(files["ir"][:-4] + ".bin", "rb").read())
    data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)
    open(weights, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match=r"c\.bin: does not hold the weights .*c\.xml was written with"):
        load_embedding_model(xml)
    forward = load_embedding_model(files["checkpoint"], engine="zoo").block
    numpy_forward = lambda batch: forward(mx.nd.array(batch)).asnumpy()  # noqa: E731
    with pytest.raises(ParityError, match=r"c\.bin: does not hold the weights"):
        ov_export.check_ir(xml, numpy_forward, (SIZE, SIZE), 1e-4)
    # An IR without the checksum (written elsewhere): the numbers give it away.
    text = open(xml).read()
    open(xml, "w").write("\n".join(line for line in text.splitlines() if "weights_sha256" not in line))
    with pytest.raises(ParityError, match=r"parity OpenVINO f32 vs MXNet .* FAILED"):
        ov_export.check_ir(xml, numpy_forward, (SIZE, SIZE), 1e-4)


def test_export_writes_nothing_when_the_ir_check_fails(files, tmp_path, monkeypatch, caplog):
    import openvino

    real = openvino.save_model

    def corrupting(model, path, **kwargs):
        real(model, path, **kwargs)
        with open(os.path.splitext(path)[0] + ".bin", "r+b") as stream:
            stream.seek(1000)
            stream.write(os.urandom(64))

    monkeypatch.setattr(openvino, "save_model", corrupting)
    out = str(tmp_path / "bad.xml")
    assert cli_main(["export", "--model", files["checkpoint"], "--output", out]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith(f"{out}: the IR as written fails: ")
    assert "model.bin: does not hold the weights" in errors[0] and "SHA-256 differs" in errors[0]
    assert sorted(os.listdir(tmp_path)) == []


def test_export_format_must_match_the_file_name(files, tmp_path, caplog):
    assert cli_main(["export", "--model", files["checkpoint"], "--format", "openvino",
                     "--output", str(tmp_path / "m.onnx")]) == 2
    assert "an OpenVINO IR is written as a .xml file" in caplog.text
    assert cli_main(["export", "--model", files["checkpoint"], "--format", "onnx",
                     "--output", str(tmp_path / "m.xml")]) == 2
    assert "a .xml file is an OpenVINO IR" in caplog.text


def test_verify_and_face_take_an_ir(files, tmp_path, capsys):
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=8)
    lines = {}
    for model in (files["checkpoint"], files["ir"]):
        assert cli_main(["verify", "--model", model, "--data-dir", str(tmp_path), "--target", "lfw",
                         "--nfolds", "2", "--batch-size", "4", "--engine", "openvino"]) == 0
        lines[model] = capsys.readouterr().out.splitlines()
    assert lines[files["ir"]] == lines[files["checkpoint"]]
    import cv2

    for k in range(2):
        cv2.imwrite(str(tmp_path / f"{k}.png"), tiny_face(0, k, SIZE)[:, :, ::-1])
    assert cli_main(["face", "verify", str(tmp_path / "0.png"), str(tmp_path / "1.png"), "--aligned",
                     "--model", files["ir"]]) == 0
    assert capsys.readouterr().out.startswith("similarity ")


def test_an_exported_models_size_must_match_the_images(files, tmp_path, caplog):
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=2, size=64)
    assert cli_main(["verify", "--model", files["ir"], "--data-dir", str(tmp_path), "--target", "lfw",
                     "--nfolds", "2", "--image-size", "64,64"]) == 2
    assert f"{files['ir']}: the model takes 112x112 images; --image-size is 64,64" in caplog.text
