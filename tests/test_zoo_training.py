"""Every network family end to end: a few ArcFace steps through the training driver, the optimiser's
per-parameter multipliers read back from the Trainer, the exported checkpoint bound by ``mx.mod.Module``,
and ``insightgluon export`` to ONNX run by onnxruntime with the same output.

One network per family, full width (the 2018 names, shapes of every layer but the embedding, and
multipliers; NASNet at a quarter of its width, which changes no name), batch 2, a 16-d embedding, on
faces as small as run every layer: 32x32 for most. After two steps the BatchNorm statistics are barely
trained, and a deep graph's inference output can overflow on the ONNX parity probe: Xception does at
32x32 and runs at 64x64, NASNet at 64x64 with a batch of 8. MobileFaceNet's GDC head needs its 7x7 map
(112x112) and SphereNet verifies its 112x96 crop of a 112x112 pack; both are small networks.
"""
import os

import mxnet as mx
import numpy as np
import onnx
import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from _legacy_graphs import legacy_embedding
from _memory import release
from _zoo import expected_multipliers, load_record, record_path, trainer_multipliers
from insightgluon.cli import main as cli_main
from insightgluon.cli.train import parse_config
from insightgluon.train.loop import Session

# network -> (parity record of its 2018 graph, image size)
FAMILIES = {"r50": ("r50", "32,32"), "y1": ("y1", "112,112"), "m1": ("m1", "32,32"),
            "m2": ("m2", "32,32"), "p68": ("p68", "32,32"), "d121": ("d121", "32,32"),
            "i4": ("i4", "32,32"), "x1": ("x1", "64,64"), "n1": ("n1", "64,64"),
            "s20": ("s20_112x96", "112,96")}
# NASNet's 85 M parameters would take 3.4 GB here: a quarter of its width runs the same code, with a
# batch of 8 (its BatchNorms keep 90% of the last batch's statistics, the 2018 momentum 0.1: after two
# batches of 2 its inference output overflows).
THIN = {"n1": 0.25}
BATCH = {"n1": "8"}
# Bodies of 32-55 M parameters: weights, gradients and momentum, the training state written from
# them, then the checkpoint and its ONNX copy (GiB; the largest with no other test beside it).
LARGE = {"r50": 2.0, "p68": 2.0, "i4": 3.0}
FC7_MULT = (2.0, 10.0)
# registered names that build the same graph (fresnet took 49 and 50 alike)
SAME_GRAPH = {"r49": "r50"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``{face side: dataset}`` with an lfw pack, for every size in :data:`FAMILIES`."""
    root = tmp_path_factory.mktemp("zoo")
    out = {}
    for side in sorted({int(size.split(",")[0]) for _, size in FAMILIES.values()}):
        per_id = 4 if side == 64 else 2  # NASNet's batch of 8
        out[side] = make_tiny_dataset(root, num_ids=3, per_id=per_id, size=side, name=f"faces{side}")
        make_tiny_bin(os.path.join(out[side], "lfw.bin"), num_pairs=10, size=side)
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.budget(
    reason="trains a 32-55 M-parameter network and exports it twice", memory_gib=LARGE[n], cpu_seconds=45,
    alone=LARGE[n] > 2)) if n in LARGE else n for n in FAMILIES])
def test_family_trains_exports_and_deploys(data, tmp_path, name):
    tag, size = FAMILIES[name]
    data = data[int(size.split(",")[0])]
    record = load_record(record_path(tag))
    prefix = str(tmp_path / name / "model")
    width = ["--version-multiplier", str(THIN[name])] if name in THIN else []
    cfg, _ = parse_config([*width, "--network", name, "--loss-type", "4", "--data-dir", data, "--prefix", prefix,
                           "--image-size", size, "--per-batch-size", BATCH.get(name, "2"), "--max-steps", "2",
                           "--verbose", "2", "--ckpt", "2", "--frequent", "1", "--data-workers", "0", "--tensorboard", "0",
                           "--target", "lfw", "--lr", "0.01", "--fc7-lr-mult", str(FC7_MULT[0]),
                           "--fc7-wd-mult", str(FC7_MULT[1]), "--emb-size", "16", *record_options(record)])
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
    ours = session.model.net(batch).asnumpy()
    del session, params  # the trained network, gradients and optimiser state: each step below loads its own
    release()
    theirs = legacy_embedding(*mx.model.load_checkpoint(prefix, 1), batch)
    assert np.abs(theirs - ours).max() <= 1e-4 * np.abs(ours).max()

    if name == "s20":  # SphereNet: verify reads the 112x112 pack as 112x96 faces
        assert cli_main(["verify", "--model", f"{prefix},1", "--data-dir", data, "--target", "lfw",
                         "--image-size", size, "--nfolds", "2"]) == 0

    # the checkpoint is recognised as this zoo network (at the size its embedding layer was made for),
    # and that network goes to ONNX
    out = str(tmp_path / f"{name}.onnx")
    assert cli_main(["export", "--model", f"{prefix},1", "--output", out, "--image-size", size,
                     "--engine", "zoo"]) == 0
    props = {p.key: p.value for p in onnx.load(out, load_external_data=False).metadata_props}
    network = props["insightgluon.network"].split()[2]
    assert props["insightgluon.network"].startswith("zoo network ") and SAME_GRAPH.get(network, network) == name


def record_options(record):
    """Flags that rebuild the record's graph (its get_network options)."""
    flags = []
    for key, value in record["options"].items():
        if key == "emb_size":
            continue  # widths do not change names, multipliers or the graph's structure
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags

