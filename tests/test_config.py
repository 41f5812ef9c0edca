"""TrainConfig, the train CLI parser (yaml precedence), lr schedule, contexts, checkpoint policy."""
import os

import numpy as np
import pytest

from insightgluon.cli.train import parse_config, split_config_files
from insightgluon.config import TrainConfig, parse_image_size, resolve_lr_steps
from insightgluon.data.property import Property, write_property
from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.train import checkpoint as ckpt
from insightgluon.train.distributed import num_dist_workers, parse_contexts, worker_threads
from insightgluon.train.lr import LRSchedule
from insightgluon.train.pipeline import BatchSchedule


@pytest.fixture
def data_dir(tmp_path):
    write_property(tmp_path, Property(1000, 112, 112))
    return str(tmp_path)


def test_legacy_defaults(data_dir):
    cfg = TrainConfig()
    legacy = {"prefix": "../model/model", "ckpt": 1, "loss_type": "4", "verbose": 2000, "max_steps": 0,
              "end_epoch": 100000, "network": "r50", "version_se": 0, "version_input": 1,
              "version_output": "", "version_unit": 3, "version_act": "prelu", "lr": 0.1, "lr_steps": "",
              "wd": 0.0005, "mom": 0.9, "emb_size": 512, "per_batch_size": 128, "margin_m": 0.5,
              "margin_s": 64.0, "margin_a": 1.0, "margin_b": 0.0, "easy_margin": 0, "margin": 4,
              "beta": 1000.0, "beta_min": 5.0, "beta_freeze": 0, "gamma": 0.12, "power": 1.0,
              "scale": 0.9993, "rand_mirror": 1, "cutoff": 0, "target": "lfw,cfp_fp,agedb_30",
              "image_size": "112,112", "version_multiplier": 1.0, "fc7_wd_mult": 1.0, "fc7_lr_mult": 1.0,
              "fc7_no_bias": False, "bn_mom": 0.9, "color": 0, "images_filter": 0, "ce_loss": False,
              "pretrained": "", "data_dir": ""}
    assert {k: getattr(cfg, k) for k in legacy} == legacy
    # the head default is the network's own: E (legacy) for r50, GDC for MobileFaceNet
    assert TrainConfig(data_dir=data_dir, network="y1").resolve(env={}).version_output == "GDC"
    assert TrainConfig(data_dir=data_dir).resolve(env={}).version_output == "E"


def test_resolve_derives_batch_steps_and_classes(data_dir):
    cfg = TrainConfig(data_dir=data_dir, ctx="cpu:2", per_batch_size=64).resolve(env={})
    assert cfg.num_classes == 1000 and cfg.global_batch == 128 and cfg.loss == "arcface"
    assert cfg.lr_step_list == (400000, 560000, 640000)  # 100k,140k,160k x 512/128
    soft = TrainConfig(data_dir=data_dir, loss_type="0", per_batch_size=512).resolve(env={})
    assert soft.loss == "softmax" and soft.lr_step_list == (40000, 60000, 80000)
    named = TrainConfig(data_dir=data_dir, loss_type="cosface", lr_steps="10,20").resolve(env={})
    assert named.loss == "cosface" and named.lr_step_list == (10, 20)
    assert cfg.resolve() is cfg and cfg.image_hw == (112, 112) and cfg.targets == ("lfw", "cfp_fp", "agedb_30")
    with pytest.raises(Exception):
        cfg.lr = 1.0  # frozen


def test_resolve_errors(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="--loss-type 3"):
        TrainConfig(data_dir=data_dir, loss_type="3").resolve(env={})
    assert TrainConfig(data_dir=data_dir, image_size="112,96").resolve(env={}).image_hw == (112, 96)
    for bad in ("112,0", "112,96,3", "a,b"):
        with pytest.raises(ConfigError, match="--image-size"):
            TrainConfig(data_dir=data_dir, image_size=bad).resolve(env={})
    with pytest.raises(ConfigError, match="--data-dir"):
        TrainConfig().resolve(env={})
    with pytest.raises(ConfigError, match="per-batch-size"):
        TrainConfig(data_dir=data_dir, per_batch_size=0).resolve(env={})
    with pytest.raises(ConfigError, match="increasing"):
        TrainConfig(data_dir=data_dir, lr_steps="20,10").resolve(env={})
    with pytest.raises(Exception, match="property"):
        TrainConfig(data_dir=str(tmp_path / "nowhere")).resolve(env={})
    with pytest.raises(ConfigError, match="images-per-identity"):
        TrainConfig(data_dir=data_dir, loss_type="12", per_batch_size=12).resolve(env={})


def test_sphereface_override_and_shift(tmp_path):
    write_property(tmp_path, Property(30000, 112, 112))
    cfg = TrainConfig(data_dir=str(tmp_path), loss_type="1", lr_steps="100").resolve(env={})
    assert (cfg.beta_freeze, cfg.gamma) == (5000, 0.06)
    sched = LRSchedule.from_config(cfg)
    assert sched(5099) == pytest.approx(0.1) and sched(5100) == pytest.approx(0.01)


def test_triplet_defaults_images_per_identity(data_dir):
    cfg = TrainConfig(data_dir=data_dir, loss_type="triplet", per_batch_size=30).resolve(env={})
    assert cfg.images_per_identity == 5 and cfg.lr_step_list == (682666, 1024000, 1365333)


def test_yaml_precedence(tmp_path):
    a, b = tmp_path / "a.yml", tmp_path / "b.yml"
    a.write_text("lr: 0.5\nper-batch-size: 32\nlr_steps: [10, 20]\nnetwork: y1\n")
    b.write_text("network: r34\nfc7_no_bias: true\n")
    cfg, _ = parse_config(["--config", str(a), f"@{b}", "--lr", "0.01"])
    assert cfg.lr == 0.01  # typed flag wins over yaml
    assert cfg.per_batch_size == 32 and cfg.lr_steps == "10,20"  # yaml wins over defaults
    assert cfg.network == "r34" and cfg.fc7_no_bias is True  # later file wins
    assert cfg.wd == 0.0005 and cfg.config == f"{a},{b}"
    cfg, _ = parse_config(["--loss-type", "arcface", "--fc7-no-bias", "--resume"])
    assert cfg.loss_type == "arcface" and cfg.fc7_no_bias and cfg.resume == "auto"


def test_yaml_errors(tmp_path):
    bad_key, bad_type, bad_yaml = tmp_path / "k.yml", tmp_path / "t.yml", tmp_path / "y.yml"
    bad_key.write_text("learning_rate: 0.1\n")
    bad_type.write_text("per_batch_size: many\n")
    bad_yaml.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"k\.yml: unknown key 'learning_rate'"):
        parse_config(["--config", str(bad_key)])
    with pytest.raises(ConfigError, match=r"t\.yml: key 'per_batch_size': expected int"):
        parse_config([f"@{bad_type}"])
    with pytest.raises(ConfigError, match=r"y\.yml: .*not valid yaml"):
        parse_config([f"@{bad_yaml}"])
    with pytest.raises(ConfigError, match="not found"):
        parse_config([f"@{tmp_path / 'missing.yml'}"])
    with pytest.raises(SystemExit):
        parse_config(["--ckpt", "7"])
    assert split_config_files(["--config=x.yml", "--lr", "1"]) == (["x.yml"], ["--lr", "1"])


def test_saved_yaml_round_trip(data_dir, tmp_path):
    cfg = TrainConfig(data_dir=data_dir, lr=0.3).resolve(env={})
    cfg.save_yaml(str(tmp_path / "c.yml"))
    import yaml

    data = yaml.safe_load((tmp_path / "c.yml").read_text())
    assert data["lr"] == 0.3 and data["global_batch"] == 128 and data["lr_step_list"] == [400000, 560000,
                                                                                          640000]
    knobs = {k: v for k, v in data.items() if k in {f.name for f in TrainConfig.knobs()}}
    assert TrainConfig.from_mapping(knobs).lr == 0.3


def test_contexts_and_workers():
    assert parse_contexts("", "cpu:2", {}) == ("cpu(0)", "cpu(1)")
    assert parse_contexts("", "cpu(0),gpu(3)", {}) == ("cpu(0)", "gpu(3)")
    assert parse_contexts("0,2", "", {}) == ("gpu(0)", "gpu(2)")
    assert parse_contexts("", "", {"CUDA_VISIBLE_DEVICES": "4,5"}) == ("gpu(0)", "gpu(1)")
    assert parse_contexts("", "", {"CUDA_VISIBLE_DEVICES": ""}) == ("cpu(0)",)
    with pytest.raises(ConfigError, match="tpu:2"):
        parse_contexts("", "tpu:2", {})
    assert num_dist_workers("device", {}) == 1
    assert num_dist_workers("dist_sync", {"DMLC_ROLE": "worker", "DMLC_NUM_WORKER": "3"}) == 3
    with pytest.raises(ConfigError, match="launch-dist"):
        num_dist_workers("dist_sync", {})
    # --launch-dist shares the launcher's OpenMP budget among its workers
    assert worker_threads(2, {"OMP_NUM_THREADS": "8"}) == 4
    assert worker_threads(3, {"OMP_NUM_THREADS": "2"}) == 1
    assert worker_threads(1, {}) == (os.cpu_count() or 1)
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='two'"):
        worker_threads(2, {"OMP_NUM_THREADS": "two"})


def test_lr_schedule():
    s = LRSchedule(0.1, steps=(10, 20), shift=5)
    assert [round(s(m), 6) for m in (1, 14, 15, 24, 25, 1000)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    w = LRSchedule(0.1, warmup_steps=4)
    assert w(1) == pytest.approx(0.025) and w(4) == pytest.approx(0.1) and w(5) == pytest.approx(0.1)
    p = LRSchedule(1.0, mode="poly", max_steps=10, power=2.0)
    assert p(1) == 1.0 and p(6) == pytest.approx(0.25) and p(10) < p(9)
    assert resolve_lr_steps("", "arcface", 512) == (100000, 140000, 160000)
    assert parse_image_size("96") == (96, 96)


def test_checkpoint_policy_modes():
    p = ckpt.CheckpointPolicy(1)
    assert p.decide([0.9, 0.8]) == 1          # last target improves
    assert p.decide([0.95, 0.7]) is None      # last target worse
    assert p.decide([0.91, 0.8]) == 3         # tie on last, sum 1.71 >= 1.71? best sum still 0 -> save
    assert p.decide([0.90, 0.8]) is None      # tie, smaller sum
    assert p.highest == [pytest.approx(1.71), 0.8]
    assert ckpt.CheckpointPolicy(0).decide([1.0]) is None
    always = ckpt.CheckpointPolicy(2)
    assert [always.decide([0.1]), always.decide([0.0])] == [1, 2]
    three = ckpt.CheckpointPolicy(3)
    assert [three.decide([0.5]), three.decide([0.4]), three.decide([0.6])] == [1, None, 1]
    assert ckpt.CheckpointPolicy(1).decide([]) is None
    with pytest.raises(CheckpointError):
        ckpt.CheckpointPolicy(4)


def test_state_round_trip_and_corruption(tmp_path):
    import mxnet as mx

    path = str(tmp_path / "m-train.state")
    blob = tmp_path / "trainer.states"
    blob.write_bytes(bytes(range(256)) * 3)
    ckpt.save_state(path, {"param/a": np.arange(6, dtype=np.float32).reshape(2, 3),
                           "param/b": mx.nd.array([[1.5, -2.0]]), "trainer": ckpt.BytesFile(str(blob))},
                    {"step": 7})
    arrays, meta = ckpt.load_state(path)
    assert meta["step"] == 7 and arrays["param/a"].shape == (2, 3)
    np.testing.assert_array_equal(arrays["param/b"], np.array([[1.5, -2.0]], dtype=np.float32))
    assert arrays["trainer"].dtype == np.uint8 and arrays["trainer"].tobytes() == blob.read_bytes()
    with np.load(path) as archive:  # the archive np.savez writes, readable by NumPy alone
        assert sorted(archive.files) == ["a/param/a", "a/param/b", "a/trainer", "meta"]
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []
    (tmp_path / "bad.state").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"bad\.state: not a readable training state"):
        ckpt.load_state(str(tmp_path / "bad.state"))
    with pytest.raises(CheckpointError, match="no such training state"):
        ckpt.load_state(str(tmp_path / "none.state"))
    states = ckpt.rng_states()
    before = np.random.rand()
    ckpt.set_rng_states(states)
    assert np.random.rand() == before


def test_batch_schedule_resumable_and_sharded():
    labels = np.repeat(np.arange(10), 5)  # 50 samples, batch 8 -> 6 steps per epoch
    full = list(BatchSchedule(labels, 8, seed=3).window(0, 15))
    tail = list(BatchSchedule(labels, 8, seed=3).window(9, 15))
    assert full[9:] == tail and len(full) == 15
    assert full[6][0][1] == 1 and full[5][0][1] == 0  # epoch boundary after 6 steps
    halves = [list(BatchSchedule(labels, 8, seed=3, rank=r, num_workers=2).window(0, 3)) for r in range(2)]
    assert [h0 + h1 for h0, h1 in zip(*halves)] == full[:3]
    epoch0 = [k[0] for batch in full[:6] for k in batch]
    assert len(set(epoch0)) == 48
    with pytest.raises(ValueError, match="cannot fill"):
        BatchSchedule(labels[:4], 8)


def test_every_recipe_parses():
    recipes = os.path.join(os.path.dirname(__file__), os.pardir, "recipes")
    files = sorted(f for f in os.listdir(recipes) if f.endswith(".yml"))
    assert len(files) >= 7
    for name in files:
        cfg, _ = parse_config([f"@{os.path.join(recipes, name)}"])
        assert cfg.network != "r50" or "r50" in name, name  # the recipe's network, not the default
        assert cfg.prefix != TrainConfig().prefix, name
