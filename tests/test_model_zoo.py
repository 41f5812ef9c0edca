"""Official model-zoo files as they are: naming variants, the zoo network behind verify/export, fine-tuning.

The model-zoo MobileFaceNet ``model-y1-test2`` names its GDC head's dense weight
``fc1_weight`` (the operator is ``pre_fc1``) and declares a 10x weight decay on it;
the checkpoint here is built in that layout from ``_legacy_graphs``.
"""
import logging
import os

import mxnet as mx
import numpy as np
import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from _legacy_graphs import legacy_embedding, legacy_mobilefacenet, legacy_resnet, random_checkpoint
from _zoo import trainer_multipliers
from insightgluon.cli import main as cli_main
from insightgluon.errors import CheckpointError
from insightgluon.engines import load_embedding_model
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.networks.identify import identify_network
from insightgluon.networks.legacy import MODEL_ZOO_VARIANTS, declared_multipliers, legacy_arrays

EMB = 128


@pytest.fixture(scope="module")
def batch():
    return mx.nd.array(np.random.RandomState(0).uniform(0, 255, (2, 3, 112, 112)))


@pytest.fixture(scope="module")
def zoo_y1(tmp_path_factory, batch):
    """``model-y1-test2/model,1`` in the April-2018 model-zoo layout; returns (prefix, its embedding)."""
    prefix = str(tmp_path_factory.mktemp("model-y1-test2") / "model")
    sym = legacy_mobilefacenet(EMB, zoo_head=True)
    args, auxs = random_checkpoint(sym, prefix, batch)
    assert "fc1_weight" in args and "pre_fc1_weight" not in args
    return prefix, legacy_embedding(sym, args, auxs, batch)


def test_variant_table_is_documented():
    assert [v.name for v in MODEL_ZOO_VARIANTS] == ["model-y1-test2"]
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "MODELS.md")) as handle:
        models_md = handle.read()
    for variant in MODEL_ZOO_VARIANTS:
        assert variant.name in models_md and all(old in models_md for old in variant.renames)


def test_model_zoo_file_loads_into_y1_and_says_which_variant(zoo_y1, batch, caplog):
    prefix, want = zoo_y1
    caplog.set_level(logging.INFO)
    net = get_network("y1", emb_size=EMB)
    assert load_legacy_params(net, f"{prefix}-0001.params") == []
    assert "model-zoo variant model-y1-test2 (fc1_weight -> pre_fc1_weight)" in caplog.text
    np.testing.assert_allclose(net(batch).asnumpy(), want, rtol=1e-4, atol=1e-4)
    _, variant = legacy_arrays(get_network("y1", emb_size=EMB), f"{prefix}-0001.params")
    assert declared_multipliers(f"{prefix}-0001.params", variant)["pre_fc1_weight"] == (1.0, 10.0)


def test_verify_engine_runs_a_2018_checkpoint_through_its_zoo_network(zoo_y1, batch):
    prefix, want = zoo_y1
    model = load_embedding_model(prefix, 1, engine="mxnet")
    assert (model.engine, model.network, model.options) == ("zoo", "y1", {"emb_size": EMB})
    assert model.describe() == "zoo network y1 (emb_size=128)"
    np.testing.assert_allclose(model.block(batch).asnumpy(), want, rtol=1e-4, atol=1e-4)
    assert load_embedding_model(prefix, 1, engine="graph").engine == "graph"


def test_verify_and_export_cli_take_the_zoo_network(zoo_y1, tmp_path, capsys):
    from insightgluon.export import read_metadata

    prefix, _ = zoo_y1
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=6)
    assert cli_main(["verify", "--model", f"{prefix},1", "--data-dir", str(tmp_path), "--target", "lfw",
                     "--nfolds", "2", "--engine", "zoo"]) == 0
    assert "[lfw]Accuracy-Flip:" in capsys.readouterr().out
    out = str(tmp_path / "y1.onnx")
    assert cli_main(["export", "--model", f"{prefix},1", "--output", out]) == 0
    meta = read_metadata(out)
    assert meta["network"] == "zoo network y1 (emb_size=128)"
    assert meta["source"] == f"{os.path.abspath(prefix)},1"


def test_a_graph_of_no_zoo_network_runs_as_itself(tmp_path, batch):
    # a ResNet-like graph whose stages have a unit count no registered depth has
    sym = legacy_resnet((1, 1, 1, 1), 16)
    prefix = str(tmp_path / "odd")
    random_checkpoint(sym, prefix, batch)
    assert load_embedding_model(prefix, 1, engine="mxnet").engine == "graph"
    with pytest.raises(CheckpointError, match=r"odd-0001\.params: cannot run through a zoo network"):
        load_embedding_model(prefix, 1, engine="zoo")


def test_identify_finds_options_and_input_size():
    for name, options in (("r34", {"version_se": 1, "version_output": "GDC", "emb_size": 256}),
                          ("r18", {"version_unit": 1, "version_input": 0}),
                          ("m1", {"version_multiplier": 0.5}), ("y1", {"emb_size": 128})):
        net = get_network(name, **options)
        sym = net(mx.sym.var("data"))
        shapes = sym.infer_shape(data=(1, 3, 112, 112))
        saved = dict(zip(sym.list_arguments()[1:] + sym.list_auxiliary_states(), shapes[0][1:] + shapes[2]))
        found, found_options, image_hw = identify_network(saved)
        assert found == name and image_hw == (112, 112)
        assert {k: v for k, v in found_options.items() if k != "emb_size"} == \
            {k: v for k, v in options.items() if k != "emb_size"}


def test_checkpoint_of_other_options_fails_naming_parameters(tmp_path):
    se = get_network("r18", version_se=1, version_multiplier=0.25, emb_size=16)
    se.initialize()
    se(mx.nd.zeros((1, 3, 112, 112)))
    path = str(tmp_path / "se-0001.params")
    mx.nd.save(path, {f"arg:{k}": p.data() for k, p in se.collect_params().items()})
    plain = get_network("r18", version_multiplier=0.25, emb_size=16)
    with pytest.raises(CheckpointError, match=r"se-0001\.params: \d+ parameters the network does not have: "
                                              r"stage1_unit1_se_conv1_weight"):
        load_legacy_params(plain, path)
    assert load_legacy_params(plain, path, allow_extra=True)[0].startswith("stage1_unit1_se_")


def test_fine_tune_from_the_model_zoo_file(zoo_y1, tmp_path, caplog):
    """``train_softmax.py --network y1 --emb-size 128 --pretrained model-y1-test2/model,1``: the head's
    weight comes from the file (not re-initialised) and keeps its declared 10x weight decay."""
    from insightgluon.cli.train import parse_config
    from insightgluon.data.recordio import FaceRecordDataset
    from insightgluon.train.model import TrainModel

    prefix, _ = zoo_y1
    data = make_tiny_dataset(tmp_path, num_ids=4, per_id=2, size=112)
    caplog.set_level(logging.INFO)
    cfg, _ = parse_config(["--network", "y1", "--emb-size", str(EMB), "--loss-type", "4", "--data-dir", data,
                           "--prefix", str(tmp_path / "ft" / "model"), "--pretrained", f"{prefix},1",
                           "--per-batch-size", "4", "--data-workers", "0"])
    cfg = cfg.resolve(env={})
    model = TrainModel(cfg)
    model.build(FaceRecordDataset(data), "local")
    assert "(model-zoo variant model-y1-test2): loaded" in caplog.text
    assert "pre_fc1_weight" not in caplog.text.split("re-initialised", 1)[1].split("\n", 1)[0]
    saved = mx.nd.load(f"{prefix}-0001.params")["arg:fc1_weight"].asnumpy()
    np.testing.assert_array_equal(model.net.collect_params()["pre_fc1_weight"].data().asnumpy(), saved)
    multipliers = trainer_multipliers(model.trainer)
    assert multipliers["pre_fc1_weight"] == (1.0, 10.0)
    assert multipliers["conv_1_conv2d_weight"] == (1.0, 1.0)
    assert multipliers["conv_1_batchnorm_beta"] == (1.0, 0.0)



@pytest.mark.parametrize("tag, shift", [("x1_outputA", 0), ("i4_outputC", 1), ("p68_outputC", 0),
                                        ("d121_outputC", 0), ("m2", 0), ("s20_112x96", 0)])
def test_identify_reads_2018_layouts(tag, shift):
    """2018 arrays as saved (Xception's per-channel kernels; i4 numbered by a process that had
    built something before) are recognised with their options and face size."""
    import re

    from _zoo import load_record, record_path, stand_ins

    rec = load_record(record_path(tag))
    saved = stand_ins({k.split(":", 1)[1]: shape for k, shape in rec["params"]})  # nothing full-size
    if shift:
        saved = {re.sub(r"^batchnorm(\d+)_", lambda m: f"batchnorm{int(m.group(1)) + shift}_", k): v
                 for k, v in saved.items()}
        assert "batchnorm0_gamma" not in saved
    name, options, image_hw = identify_network(saved)
    assert name == rec["network"]
    assert {k: v for k, v in options.items() if k != "emb_size"} == \
        {k: v for k, v in rec["options"].items() if k != "emb_size"}
    assert image_hw == (112, 96 if tag.startswith("s20") else 112)
