"""``train_softmax.py --network NAME --loss-type N`` on a machine with no dataset and no GPU."""
import json
import logging
import os

import pytest

import insightgluon.data.cache as cache
from _datautil import make_tiny_dataset
from insightgluon.cli import main as cli_main
from insightgluon.cli.train import CPU_PER_BATCH_SIZE, check_devices, cpu_defaults, parse_config
from insightgluon.errors import ConfigError

TINY_SYNTHETIC = {"num_ids": 3, "imgs_per_id": 4, "num_val_ids": 4, "pairs_per_bin": 10, "image_size": 32}
SMALL_RUN = ["--network", "r18", "--version-multiplier", "0.125", "--emb-size", "8", "--image-size", "32,32",
             "--per-batch-size", "4", "--max-steps", "1", "--frequent", "1", "--data-workers", "0",
             "--tensorboard", "0", "--dry-run"]


@pytest.fixture
def tiny_default(monkeypatch, tmp_path):
    """The default data shrunk to a few identities, cached under ``tmp_path`` through XDG_CACHE_HOME."""
    monkeypatch.setattr(cache, "DEFAULT_SYNTHETIC", dict(cache.DEFAULT_SYNTHETIC, **TINY_SYNTHETIC))
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "insightgluon" / cache.CACHE_NAME


def _info(caplog, needle):
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_no_data_dir_trains_on_the_synthetic_faces_made_once(tiny_default, caplog):
    caplog.set_level(logging.INFO)
    assert cli_main(["train", *SMALL_RUN]) == 0
    first = _info(caplog, "no --data-dir")
    assert len(first) == 1 and str(tiny_default) in first[0] and "generated now in" in first[0]
    assert "3 identities x 4 images" in first[0] and "INSIGHTGLUON_DATA=DIR" in first[0]
    assert _info(caplog, "devices: training on the CPU") and _info(caplog, "Speed:")
    assert json.loads((tiny_default / cache.PARAMS_FILE).read_text())["num_ids"] == 3
    stamp = os.path.getmtime(tiny_default / "train.rec")
    caplog.clear()
    assert cli_main(["train", *SMALL_RUN]) == 0
    assert "already there" in _info(caplog, "no --data-dir")[0]
    assert os.path.getmtime(tiny_default / "train.rec") == stamp


def test_the_environment_variable_moves_the_cache_or_names_a_dataset(tiny_default, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "mine"))
    made = cache.default_data(num_workers=1)
    assert made.path == str(tmp_path / "mine") and made.synthetic and "INSIGHTGLUON_DATA=" in made.describe()
    data = make_tiny_dataset(tmp_path, name="own")
    monkeypatch.setenv(cache.ENV_VAR, data)
    own = cache.default_data()
    assert own.path == data and own.synthetic is None and own.generated_seconds is None
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "junk"))
    with pytest.raises(ConfigError, match="holds files but no dataset"):
        cache.default_data()
    assert cache.cache_dir({"HOME": "/h"}) == f"/h/.cache/insightgluon/{cache.CACHE_NAME}"
    assert cache.cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == f"/x/insightgluon/{cache.CACHE_NAME}"


def test_a_killed_generation_leaves_no_cache_that_looks_complete(tiny_default, monkeypatch):
    import insightgluon.data.synthetic as synthetic

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "save_bin", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.default_data(num_workers=1)
    assert not (tiny_default / "property").exists()
    stale = tiny_default.parent / f".{cache.CACHE_NAME}.abc.tmp"
    stale.mkdir()  # what a SIGKILL would leave behind
    monkeypatch.undo()
    monkeypatch.setattr(cache, "DEFAULT_SYNTHETIC", dict(cache.DEFAULT_SYNTHETIC, **TINY_SYNTHETIC))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_default.parent.parent))
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    made = cache.default_data(num_workers=1)
    assert made.generated_seconds is not None and (tiny_default / "lfw.bin").is_file() and not stale.exists()
    monkeypatch.setattr(cache, "DEFAULT_SYNTHETIC", dict(cache.DEFAULT_SYNTHETIC, num_ids=5))
    assert cache.default_data(num_workers=1).synthetic["num_ids"] == 5  # a new default size: written again


def test_devices_without_a_gpu(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for flags in (["--gpus", "0"], ["--ctx", "gpu:2"]):
        caplog.clear()
        assert cli_main(["train", *flags, "--data-dir", str(tmp_path / "absent")]) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "MXNet sees no GPU" in errors[0] and "leave it out" in errors[0]
    cfg, _ = parse_config(["--data-dir", "x"])
    env = check_devices(cfg, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert "CUDA_VISIBLE_DEVICES" not in env and _info(caplog, "MXNet sees no GPU: training on the CPU")


def test_a_missing_data_dir_is_still_one_line(tmp_path, caplog):
    assert cli_main(["train", "--data-dir", str(tmp_path / "absent"), "--dry-run"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"--data-dir {tmp_path / 'absent'}: no such folder (leave --data-dir out to train on "
                      "the synthetic faces)"]


def test_cpu_batch_default_leaves_a_chosen_batch_alone(tmp_path):
    recipe = tmp_path / "r.yml"
    recipe.write_text("per_batch_size: 64\n")
    for argv, expected in ((["--network", "r100"], CPU_PER_BATCH_SIZE), (["--per-batch-size", "128"], 128),
                           ([f"@{recipe}"], 64), (["--per-batch", "8"], 8)):
        cfg, args = parse_config(argv)
        assert cpu_defaults(cfg, args.chosen, {}).per_batch_size == expected, argv
    cfg, args = parse_config(["--gpus", "0"])
    assert cpu_defaults(cfg, args.chosen, {}).per_batch_size == 128  # GPUs keep the legacy default
    assert CPU_PER_BATCH_SIZE % 5 == 0  # triplet batches hold 5 images per identity


def test_dist_workers_get_the_default_data(tiny_default, monkeypatch):
    import insightgluon.train.launcher as launcher

    seen = {}
    monkeypatch.setattr(launcher, "launch", lambda n, argv, **options: seen.setdefault("argv", argv) and 0)
    assert cli_main(["train", *SMALL_RUN, "--launch-dist", "2"]) == 0
    argv = seen["argv"]
    assert argv[argv.index("--data-dir") + 1] == str(tiny_default) and "--launch-dist" not in argv
