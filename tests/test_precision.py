"""Mixed precision: --dtype checks, bfloat16 training with float32 master weights, agreement with
float32, float32 checkpoints, fp16 loss scaling."""
import os

import mxnet as mx
import numpy as np
import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from insightgluon import precision
from insightgluon.cli.train import parse_config
from insightgluon.config import TrainConfig
from insightgluon.errors import ConfigError
from insightgluon.networks import get_network
from insightgluon.nn import compute_dtype, float32_symbol, set_compute_dtype
from insightgluon.precision import DynamicLossScale, check_dtype

BF16_CPU = "avx512_bf16" in precision.cpu_flags() or "amx_bf16" in precision.cpu_flags()
needs_bf16 = pytest.mark.skipif(not BF16_CPU, reason="this CPU has no bfloat16 instructions")
SIZE = 32
TINY = ["--network", "r18", "--version-multiplier", "0.125", "--emb-size", "16", "--image-size", f"{SIZE},{SIZE}",
        "--per-batch-size", "8", "--lr", "0.05", "--frequent", "1", "--verbose", "6", "--ckpt", "2",
        "--data-workers", "0", "--tensorboard", "0", "--target", "lfw", "--margin-s", "16", "--rand-mirror", "0"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = make_tiny_dataset(tmp_path_factory.mktemp("precision"), num_ids=4, per_id=6, size=SIZE)
    make_tiny_bin(os.path.join(out, "lfw.bin"), num_pairs=10, size=SIZE)
    return out


def test_dtype_refused_with_one_line_where_unsupported():
    cpu, gpu = ["cpu(0)"], ["gpu(0)"]
    assert check_dtype("bf16", cpu, flags={"avx512f", "avx512_bf16"}) == "bfloat16"
    assert check_dtype("bf16", cpu, flags={"amx_bf16"}) == "bfloat16"
    assert check_dtype("fp16", gpu, flags=set()) == "float16"
    assert check_dtype("fp32", cpu, flags=set()) == "float32"
    for dtype, ctx, flags, message in (("bf16", cpu, {"avx512f", "avx2"}, "no bfloat16 instructions"),
                                       ("bf16", gpu, {"avx512_bf16"}, "bf16 is for CPUs"),
                                       ("fp16", cpu, {"avx512_bf16"}, "fp16 needs GPUs"),
                                       ("int8", cpu, set(), "choose one of fp32, bf16, fp16")):
        with pytest.raises(ConfigError, match=message) as err:
            check_dtype(dtype, ctx, flags=flags)
        assert "\n" not in str(err.value)


def test_config_checks_the_machine(data_dir, monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2"})
    with pytest.raises(ConfigError, match="--dtype bf16: this CPU has no bfloat16 instructions"):
        TrainConfig(data_dir=data_dir, dtype="bf16").resolve(env={})
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": {"avx512_bf16"})
    assert TrainConfig(data_dir=data_dir, dtype="bf16").resolve(env={}).dtype == "bf16"
    cfg, _ = parse_config(["--data-dir", data_dir, "--dtype", "bf16"])
    assert cfg.dtype == "bf16"


def test_cpu_flags_parse_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "sse", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(str(tmp_path / "absent")) == set()


@needs_bf16
@pytest.mark.parametrize("name, options", [("r18", {"version_multiplier": 0.25}), ("y1", {"emb_size": 128}),
                                           ("m1", {"version_multiplier": 0.25}), ("s20", {"version_multiplier": 0.25})])
def test_bf16_embeddings_agree_with_fp32(name, options):
    net = get_network(name, **options)
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (4, 3, 112, 112)).astype(np.float32))
    want = net(x).asnumpy()
    twin = get_network(name, **options)
    set_compute_dtype(twin, "bfloat16")
    twin.initialize()
    twin.collect_params().load_dict({k: p.data() for k, p in net.collect_params().items()})
    twin.hybridize(static_alloc=True, static_shape=True)
    got = mx.nd.amp_cast(twin(x), dtype="float32").asnumpy()
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.99, cosine
    assert all(p.data().dtype == np.float32 for p in twin.collect_params().values())


@needs_bf16
def test_bf16_training_falls_and_keeps_float32_weights(data_dir, tmp_path):
    from insightgluon.train.loop import Session

    cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(tmp_path / "m"), *TINY, "--max-steps", "12",
                           "--dtype", "bf16"])
    session = Session(cfg.resolve(env={}))
    result = session.run()
    losses = [h["loss"] for h in result.history]
    assert np.isfinite(losses).all() and np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert compute_dtype(session.model.net) == "bfloat16"
    for name, param in session.model.params.items():
        assert param.data().dtype == np.float32, name
        if param.grad_req != "null":
            assert param.grad().dtype == np.float32, name
    # the checkpoint is the float32 graph: no casts, Module binds it
    sym, args, auxs = mx.model.load_checkpoint(str(tmp_path / "m"), 2)
    assert not any(n["op"] == "amp_cast" for n in __import__("json").loads(sym.tojson())["nodes"])
    assert all(v.dtype == np.float32 for v in list(args.values()) + list(auxs.values()))
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind([("data", (2, 3, SIZE, SIZE))], for_training=False)
    mod.set_params(args, auxs)
    assert result.verification and all(0.0 <= v["lfw"] <= 1.0 for v in result.verification)


@needs_bf16
def test_resume_is_exact_within_a_dtype_and_refused_across(data_dir, tmp_path):
    from insightgluon.errors import CheckpointError
    from insightgluon.train import train

    def run(prefix, *extra):
        cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(prefix), *TINY, "--ckpt", "0",
                               "--dtype", "bf16", *extra])
        return train(cfg.resolve(env={}))

    straight = run(tmp_path / "a" / "m", "--max-steps", "6")
    run(tmp_path / "b" / "m", "--max-steps", "3", "--state-every", "3")
    resumed = run(tmp_path / "b" / "m", "--max-steps", "6", "--resume")
    assert resumed.checksum == straight.checksum
    cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(tmp_path / "b" / "m"), *TINY, "--max-steps", "9",
                           "--resume"])
    with pytest.raises(CheckpointError, match="saved with dtype='bf16', this run has dtype='fp32'"):
        train(cfg.resolve(env={}))


def test_float32_symbol_restores_the_compute_dtype():
    net = get_network("r18", version_multiplier=0.25, emb_size=8)
    set_compute_dtype(net, "bfloat16")
    sym = float32_symbol(net)
    assert compute_dtype(net) == "bfloat16"
    assert not any(n["op"] == "amp_cast" for n in __import__("json").loads(sym.tojson())["nodes"])
    with pytest.raises(ValueError, match="compute dtype 'int8'"):
        set_compute_dtype(net, "int8")


def test_dynamic_loss_scale():
    scale = DynamicLossScale(scale=1024.0, window=3)
    assert scale.update(True) and scale.update(True) and scale.scale == 1024.0
    assert scale.update(True) and scale.scale == 2048.0       # a window of good steps doubles it
    assert not scale.update(False) and scale.scale == 1024.0  # an overflow skips the step and halves it
    state = scale.state()
    again = DynamicLossScale()
    again.load(state)
    assert (again.scale, again.good_steps) == (1024.0, 0)
    floor = DynamicLossScale(scale=1.0, minimum=1.0)
    assert not floor.update(False) and floor.scale == 1.0


def test_scaled_step_skips_an_overflowing_update(data_dir, tmp_path):
    """The fp16 update path (loss scaling, overflow check, skip), run here in float32 because MXNet
    has no float16 convolution on CPUs."""
    from insightgluon.data.recordio import FaceRecordDataset
    from insightgluon.train.model import TrainModel

    cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(tmp_path / "m"), *TINY])
    model = TrainModel(cfg.resolve(env={}))
    ds = FaceRecordDataset(data_dir)
    model.build(ds, "local")
    model.loss_scale = DynamicLossScale(scale=256.0, window=1000)
    images = np.stack([ds[i][0] for i in range(8)])
    labels = np.array([ds[i][1] for i in range(8)], dtype=np.float32)
    before = model.checksum()
    model.step(images, labels, 0.05, 1)
    after = model.checksum()
    assert after != before and model.loss_scale.scale == 256.0
    weight = model.net.collect_params()["conv0_weight"]
    weight.set_data(weight.data() * np.inf)  # every gradient overflows now
    model.step(images, labels, 0.05, 2)
    assert model.loss_scale.scale == 128.0


@pytest.fixture(scope="module")
def y1_checkpoint(tmp_path_factory):
    """A y1 checkpoint whose BatchNorm statistics fit the tiny faces (so embeddings are not trivial)."""
    from _datautil import tiny_face
    from insightgluon.train.checkpoint import save_deployable

    net = get_network("y1", emb_size=32)
    net.initialize(mx.init.Xavier())
    faces = np.stack([tiny_face(k, i) for k in range(8) for i in range(2)]).transpose(0, 3, 1, 2)
    with mx.autograd.record():  # one training-mode pass: BatchNorm statistics from the faces
        net(mx.nd.array(faces.astype(np.float32)))
    prefix = str(tmp_path_factory.mktemp("y1") / "model")
    save_deployable(net, prefix, 1)
    return prefix


@needs_bf16
@pytest.mark.parametrize("engine", ["zoo", "graph"])
def test_bf16_evaluation_matches_fp32(y1_checkpoint, engine):
    from _datautil import tiny_face
    from insightgluon.eval.embed import embed_images
    from insightgluon.engines import load_embedding_model

    images = np.stack([tiny_face(k, i) for k in range(6) for i in range(2)])
    fp32 = load_embedding_model(y1_checkpoint, 1, engine=engine)
    bf16 = load_embedding_model(y1_checkpoint, 1, engine=engine, dtype="bfloat16")
    assert bf16.describe().endswith("in bfloat16") and bf16.engine == engine
    want, _ = embed_images(fp32.block, images, batch_size=4)
    got, _ = embed_images(bf16.block, images, batch_size=4)
    assert got.dtype == np.float32 and (got * want).sum(1).min() > 0.99


def test_evaluation_dtype_refused_with_one_line(y1_checkpoint, tmp_path, monkeypatch, caplog):
    from insightgluon.cli import main as cli_main

    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=4)
    base = ["verify", "--model", f"{y1_checkpoint},1", "--data-dir", str(tmp_path), "--target", "lfw",
            "--nfolds", "2"]
    assert cli_main(base + ["--dtype", "bf16", "--engine", "onnxruntime"]) == 2
    assert "engine onnxruntime computes in float32 only" in caplog.text
    monkeypatch.setattr(precision, "cpu_flags", lambda path="/proc/cpuinfo": {"avx2"})
    caplog.clear()
    assert cli_main(base + ["--dtype", "bf16"]) == 2
    assert "--dtype bf16: this CPU has no bfloat16 instructions" in caplog.text
    assert cli_main(base + ["--dtype", "fp16"]) == 2
    assert "--dtype fp16 needs GPUs" in caplog.text
