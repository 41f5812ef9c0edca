"""Every network family end to end: a few ArcFace steps through the training driver, the optimiser's
per-parameter multipliers read back from the Trainer, the exported checkpoint bound by ``mx.mod.Module``,
and ``insightgluon export`` to ONNX run by onnxruntime with the same output.

One network per family, full width, batch 2, a 64-d embedding (the `E` head's dense layer on a 12x12
or 7x7 map would otherwise hold up to 113 M weights, and the heavy families share this one process).
"""
import os

import mxnet as mx
import numpy as np
import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from _legacy_graphs import legacy_embedding
from _zoo import expected_multipliers, load_record, record_path, trainer_multipliers
from insightgluon.cli import main as cli_main
from insightgluon.cli.train import parse_config
from insightgluon.model_io import load_embedding_model
from insightgluon.train.loop import Session

# network -> (parity record of its 2018 graph, image size)
FAMILIES = {"r50": ("r50", "112,112"), "y1": ("y1", "112,112"), "m1": ("m1", "112,112"),
            "m2": ("m2", "112,112"), "p68": ("p68", "112,112"), "d121": ("d121", "112,112"),
            "i4": ("i4", "112,112"), "x1": ("x1", "112,112"), "n1": ("n1", "112,112"),
            "s20": ("s20_112x96", "112,96")}
HEAVY = {"r50", "p68", "d121", "i4", "x1", "n1"}
FC7_MULT = (2.0, 10.0)
# registered names that build the same graph (fresnet took 49 and 50 alike)
SAME_GRAPH = {"r49": "r50"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = make_tiny_dataset(tmp_path_factory.mktemp("zoo"), num_ids=3, per_id=2, size=112)
    make_tiny_bin(os.path.join(out, "lfw.bin"), num_pairs=10)
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in FAMILIES])
def test_family_trains_exports_and_deploys(data, tmp_path, name):
    tag, size = FAMILIES[name]
    record = load_record(record_path(tag))
    prefix = str(tmp_path / name / "model")
    cfg, _ = parse_config(["--network", name, "--loss-type", "4", "--data-dir", data, "--prefix", prefix,
                           "--image-size", size, "--per-batch-size", "2", "--max-steps", "2", "--verbose", "2",
                           "--ckpt", "2", "--frequent", "1", "--data-workers", "0", "--tensorboard", "0",
                           "--target", "lfw", "--lr", "0.01", "--fc7-lr-mult", str(FC7_MULT[0]),
                           "--fc7-wd-mult", str(FC7_MULT[1]), "--emb-size", "64", *record_options(record)])
    session = Session(cfg.resolve(env={}))
    result = session.run()
    assert result.steps == 2 and np.isfinite(result.last_loss)

    # the Trainer applies the 2018 graph's multipliers (and MXNet's rule elsewhere), fc7 the flags'
    got = {k: v for k, v in trainer_multipliers(session.model.trainer).items() if not k.startswith("fc7")}
    want = expected_multipliers(record)
    rule = {True: (1.0, 1.0), False: (1.0, 0.0)}  # (x1's stacked kernels: what their slices had)
    assert got == {k: want.get(k, rule[k.endswith(("_weight", "_gamma"))]) for k in got}
    assert trainer_multipliers(session.model.trainer)["fc7_weight"] == FC7_MULT
    params = session.model.net.collect_params()
    for key in record["fixed_gamma"]:  # fix_gamma BatchNorms: gamma keeps its initial 1
        np.testing.assert_array_equal(params[key].data().asnumpy(), 1.0)

    # the exported checkpoint: Module binds it and reproduces the network
    h, w = (int(v) for v in size.split(","))
    batch = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3, h, w)).astype(np.float32))
    sym, args, auxs = mx.model.load_checkpoint(prefix, 1)
    ours = session.model.net(batch).asnumpy()
    theirs = legacy_embedding(sym, args, auxs, batch)
    assert np.abs(theirs - ours).max() <= 1e-4 * np.abs(ours).max()
    model = load_embedding_model(prefix, 1)
    assert model.engine == "zoo" and SAME_GRAPH.get(model.network, model.network) == name

    if size != "112,112":  # SphereNet: verify reads the 112x112 pack as 112x96 faces
        assert cli_main(["verify", "--model", f"{prefix},1", "--data-dir", data, "--target", "lfw",
                         "--image-size", size, "--nfolds", "2"]) == 0

    out = str(tmp_path / f"{name}.onnx")
    assert cli_main(["export", "--model", f"{prefix},1", "--output", out, "--image-size", size]) == 0


def record_options(record):
    """Flags that rebuild the record's graph (its get_network options)."""
    flags = []
    for key, value in record["options"].items():
        if key == "emb_size":
            continue  # widths do not change names, multipliers or the graph's structure
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags

