"""arcface_torch backbones and InsightFace ONNX graphs converted to MXNet checkpoints, without PyTorch.

The reference embeddings in ``data/arcface_torch/expected.npz`` were computed once by PyTorch with
arcface_torch's own code from the seeded weights of ``_seeded.py`` (``make_reference.py``); here the
same weights are written as ``.pth`` files by ``_torchfile`` and converted.
"""
import logging
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from _seeded import seeded_images, seeded_state_dict
from _torchfile import write_pth
from insightgluon.convert.source import embed, load_converted, module_embedding, onnx_embedding, write_checkpoint
from insightgluon.convert.state_dict import identify_torch_network, map_state_dict, our_name, torch_key, torch_networks
from insightgluon.errors import CheckpointError
from insightgluon.networks import get_network
from insightgluon.networks.identify import parameter_shapes
from insightgluon.parity import max_relative

HERE = os.path.dirname(__file__)
EXPECTED = os.path.join(HERE, "data", "arcface_torch", "expected.npz")
TORCH_NETWORKS = ["iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "mbf", "mbf_large",
                  "vit_t", "vit_s", "vit_b", "vit_l"]


def torch_shapes(network, **options):
    """The state-dict keys and shapes arcface_torch's model of ``network`` has (BatchNorm counters too)."""
    shapes = {torch_key(k): v for k, v in parameter_shapes(get_network(network, **options)).items()}
    for key in [k for k in shapes if k.endswith(".running_var")]:
        shapes[key.replace("running_var", "num_batches_tracked")] = ()
    if network.startswith("vit"):
        shapes["mask_token"] = (1, 1, shapes["pos_embed"][-1])
    return shapes


def seeded_pth(path, network, **write_options):
    return write_pth(str(path), seeded_state_dict(torch_shapes(network)), **write_options)


def test_every_family_is_registered_under_its_arcface_torch_name():
    assert torch_networks() == TORCH_NETWORKS


@pytest.mark.parametrize("network", TORCH_NETWORKS)
def test_every_state_dict_key_has_one_place_and_the_file_names_its_network(network):
    # zero-stride arrays: the mapping of even iresnet200 and vit_l costs no memory
    shapes = torch_shapes(network)
    state = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
    assert identify_torch_network(state) == network
    net = get_network(network)
    params = map_state_dict(state, network, net, "x.pth")
    assert set(params) == set(net.collect_params().keys())
    assert all(torch_key(name) in shapes and our_name(torch_key(name), params) == name for name in params)


@pytest.mark.parametrize("network, how", [("iresnet18", dict()),
                                          ("mbf", dict(legacy=True)),
                                          ("vit_t", dict(wrap="state_dict"))])
def test_converted_embedding_equals_pytorchs(tmp_path, network, how):
    # the zip format, the legacy one, and a checkpoint dict around a DataParallel state dict
    state = seeded_state_dict(torch_shapes(network))
    if "wrap" in how:
        state = {f"module.{k}": v for k, v in state.items()}
    path = write_pth(str(tmp_path / f"{network}.pth"), state, **how)
    converted = load_converted(path)
    assert (converted.network, converted.emb_size) == (network, 512)
    expected = np.load(EXPECTED)[network]
    images = seeded_images()
    assert max_relative(embed(converted, images), expected) < 1e-5
    prefix = str(tmp_path / "converted")
    write_checkpoint(converted, prefix)
    assert max_relative(module_embedding(prefix, 0, images), expected) < 1e-5


def test_an_onnx_graph_with_folded_batchnorms_converts(tmp_path):
    from _onnx_folded import write_iresnet_onnx

    state = seeded_state_dict(torch_shapes("iresnet18"))
    path = write_iresnet_onnx(state, (2, 2, 2, 2), str(tmp_path / "w600k_r18.onnx"))
    converted = load_converted(path)
    assert converted.network == "iresnet18"
    images = seeded_images()
    ours = embed(converted, images)
    assert max_relative(ours, onnx_embedding(path, images)) < 1e-5
    assert max_relative(ours, np.load(EXPECTED)["iresnet18"]) < 1e-5  # the folded graph is PyTorch's model
    # folded BatchNorms come back as identity statistics, the folded shift as their beta
    params = converted.net.collect_params()
    assert np.all(params["layer1_0_bn2_gamma"].data().asnumpy() == 1)
    assert np.allclose(params["layer1_0_bn2_moving_var"].data().asnumpy() + 1e-5, 1)
    with pytest.raises(CheckpointError, match=r"w600k_r18.onnx: ONNX BatchNormalization '.*' with weight \(64,\) "
                                              r"where iresnet34 has layer1_2_bn1|w600k_r18.onnx: .*iresnet34"):
        load_converted(path, "iresnet34")
    with pytest.raises(CheckpointError, match=r"ONNX conversion maps iresnet\*, mbf\* graphs"):
        load_converted(path, "vit_t")
    # any other graph: one line, and it still runs as it is through the ONNX engines
    from onnx import TensorProto, helper, numpy_helper

    other = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], "other",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 110, 110])],
        [numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")]))
    import onnx

    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(CheckpointError, match=r"other.onnx: the graph is none of iresnet18, .*mbf_large \(it still "
                                              r"runs as it is with --engine onnxruntime or openvino\)"):
        load_converted(str(tmp_path / "other.onnx"))


def test_a_wrong_network_names_the_first_parameter_that_differs(tmp_path):
    path = seeded_pth(tmp_path / "mbf.pth", "mbf")
    with pytest.raises(CheckpointError, match=r"mbf.pth: 'layers.0.layers.0.weight' is \(128, 3, 3, 3\) in the file "
                                              r"but \(256, 3, 3, 3\) in mbf_large"):
        load_converted(path, "mbf_large")
    with pytest.raises(CheckpointError, match=r"mbf.pth: 'layers.0.layers.0.weight' \(128, 3, 3, 3\) has no place "
                                              r"in iresnet18"):
        load_converted(path, "iresnet18")
    with pytest.raises(CheckpointError, match=r"--network r50: a 2018 network"):
        load_converted(path, "r50")
    state = seeded_state_dict(torch_shapes("mbf"))
    del state["features.layers.3.running_var"]
    with pytest.raises(CheckpointError, match=r"has no 'features.layers.3.running_var' that mbf needs"):
        load_converted(write_pth(str(tmp_path / "cut.pth"), state), "mbf")
    with pytest.raises(CheckpointError, match=r"fit no arcface_torch network"):
        load_converted(write_pth(str(tmp_path / "other.pth"), {"conv.weight": np.zeros((2, 3, 1, 1), np.float32)}))


def test_the_convert_command(tmp_path):
    source = seeded_pth(tmp_path / "backbone.pth", "mbf")
    out = str(tmp_path / "model" / "mbf")
    run = subprocess.run([sys.executable, "-m", "insightgluon", "convert", source, "--output", out],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr
    assert "backbone.pth: mbf, 512-d embedding" in run.stdout and f"wrote {out}-symbol.json" in run.stdout
    assert "mx.mod.Module on the written files against the converted network" in run.stdout
    assert os.path.isfile(f"{out}-0000.params")
    module = os.path.join(HERE, "data", "torch", "small_module.pth")
    run = subprocess.run([sys.executable, "-m", "insightgluon", "convert", module, "--output", out + "x"],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 2 and not os.path.exists(f"{out}x-symbol.json")
    assert "small_module.pth: refusing to unpickle torch.nn.modules.container.Sequential" in run.stderr


@pytest.mark.parametrize("engine", ["zoo", "graph", "onnxruntime", "openvino"])
def test_a_pth_runs_on_every_engine(tmp_path, engine):
    from insightgluon.engines import load_embedding_model
    from insightgluon.engines.base import run_block

    path = seeded_pth(tmp_path / "mbf.pth", "mbf")
    model = load_embedding_model(path, engine=engine)
    assert max_relative(run_block(model.block, seeded_images()), np.load(EXPECTED)["mbf"]) < 1e-5
    assert not any(name.startswith("insightgluon-convert-") for name in os.listdir(tmp_path))


def test_low_precision_keeps_arcface_torchs_float32_head():
    from insightgluon.nn import compute_dtype, set_compute_dtype

    net = get_network("iresnet18")
    set_compute_dtype(net, "bfloat16")
    assert compute_dtype(net) == "bfloat16"
    cast, fc, features = net.embedding._children.values()  # arcface_torch's autocast ends before fc
    assert (cast.compute_dtype, fc.compute_dtype, features.compute_dtype) == ("bfloat16", "float32", "float32")
    x = mx.nd.array(seeded_images())
    fp32 = get_network("iresnet18")
    fp32.initialize()
    fp32(x)
    net.initialize()
    net(x)
    for name, param in net.collect_params().items():
        param.set_data(fp32.collect_params()[name].data())
    low, high = net(x).asnumpy(), fp32(x).asnumpy()
    assert low.dtype == np.float32  # the head's output
    cosine = (low * high).sum(1) / np.linalg.norm(low, axis=1) / np.linalg.norm(high, axis=1)
    assert cosine.min() > 0.99


def test_fine_tuning_from_a_pth(tmp_path, caplog):
    from insightgluon.cli import run_tool

    source = seeded_pth(tmp_path / "backbone.pth", "mbf")
    with caplog.at_level(logging.INFO):
        code = run_tool("train", ["--network", "mbf", "--loss-type", "2", "--pretrained", source, "--max-steps", "2",
                                  "--per-batch-size", "4", "--target", "", "--dry-run", "--data-workers", "0",
                                  "--prefix", str(tmp_path / "m")])
    assert code == 0
    assert "pretrained " + source + ": loaded 283 arrays; re-initialised 1 (fc7_weight)" in caplog.text
    with caplog.at_level(logging.INFO):
        assert run_tool("train", ["--network", "iresnet18", "--pretrained", source, "--max-steps", "1",
                                  "--target", "", "--dry-run", "--prefix", str(tmp_path / "m")]) == 2
    assert "has no place in iresnet18" in caplog.text


@pytest.mark.parametrize("network, dtype", [
    ("mbf", "bf16"),
    pytest.param("vit_t", "fp32", marks=pytest.mark.budget(
        reason="19 M parameters with gradients, momentum, the training state and the exports", memory_gib=1.5))])
def test_arcface_torch_families_train_and_export(tmp_path, network, dtype):
    # through the training driver to a checkpoint Module binds, recognised as its zoo network, then ONNX
    from _datautil import make_tiny_bin, make_tiny_dataset
    from insightgluon.cli import main as cli_main
    from insightgluon.cli.train import parse_config
    from insightgluon.precision import BF16_CPU_FLAGS, cpu_flags
    from insightgluon.train.loop import Session

    if dtype == "bf16" and not set(BF16_CPU_FLAGS) & cpu_flags():
        pytest.skip("this CPU has no bfloat16 instructions")
    data = make_tiny_dataset(tmp_path, num_ids=3, per_id=2, size=112, name="faces")
    make_tiny_bin(os.path.join(data, "lfw.bin"), num_pairs=10, size=112)
    prefix = str(tmp_path / network / "model")
    cfg, _ = parse_config(["--network", network, "--loss-type", "4", "--data-dir", data, "--prefix", prefix,
                           "--per-batch-size", "2", "--max-steps", "2", "--verbose", "2", "--ckpt", "2",
                           "--data-workers", "0", "--tensorboard", "0", "--target", "lfw", "--lr", "0.01",
                           "--emb-size", "16", "--dtype", dtype])
    session = Session(cfg.resolve(env={}))
    result = session.run()
    assert result.steps == 2 and np.isfinite(result.last_loss)
    images = seeded_images()
    ours = session.model.net(mx.nd.array(images)).astype("float32").asnumpy()
    del session
    tolerance = 1e-4 if dtype == "fp32" else 2e-2  # the checkpoint's graph is float32
    assert max_relative(module_embedding(prefix, 1, images), ours) < tolerance
    out = str(tmp_path / f"{network}.onnx")
    assert cli_main(["export", "--model", f"{prefix},1", "--output", out, "--engine", "zoo"]) == 0
    import onnx

    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["insightgluon.network"].startswith(f"zoo network {network} ")
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    model = get_model(out, providers=["CPUExecutionProvider"])  # the insightface package takes it, raw pixels in
    assert isinstance(model, ArcFaceONNX) and (model.input_mean, model.input_std) == (0.0, 1.0)


def test_export_takes_a_pth(tmp_path):
    import onnx

    from insightgluon.cli import main as cli_main

    source = seeded_pth(tmp_path / "backbone.pth", "mbf")
    out = str(tmp_path / "mbf.onnx")
    assert cli_main(["export", "--model", source, "--output", out]) == 0
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["insightgluon.source"] == source and props["insightgluon.network"].startswith("zoo network mbf ")
    images = seeded_images()
    from insightgluon.engines import load_embedding_model

    model = load_embedding_model(out, engine="onnxruntime")
    assert max_relative(model.block(images), np.load(EXPECTED)["mbf"]) < 1e-5


def test_the_vit_trains_with_arcface_torchs_stochastic_depth():
    from mxnet import autograd

    from insightgluon.nn import Dropout

    drop = Dropout("drop_path", 0.5, axes=(1, 2))  # a whole sample's branch at once, scaled as DropPath
    with autograd.record(train_mode=True):
        out = drop(mx.nd.ones((64, 4, 8))).asnumpy()
    per_sample = {tuple(np.unique(sample)) for sample in out}
    assert per_sample == {(0.0,), (2.0,)}
    assert (drop(mx.nd.ones((2, 4, 8))).asnumpy() == 1).all()  # the identity at inference
    rates = {block.drop_attn.p if block.drop_attn else 0.0 for block in get_network("vit_t").blocks._children.values()}
    assert min(rates) == 0.0 and max(rates) == pytest.approx(0.1) and len(rates) == 12  # linear, 0 to 0.1
