"""Every recipe as a shell script: the same configuration as its yaml file, and it runs on tiny data."""
import dataclasses
import glob
import os
import subprocess
import sys

import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from insightgluon.cli.train import parse_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "recipes", "*.sh")))
# Machine-specific settings the scripts take from the environment, not from the recipe.
PER_MACHINE = ("data_dir", "gpus", "prefix", "pretrained", "config")


@pytest.fixture(scope="module")
def print_args(tmp_path_factory):
    """An executable that stands in for the interpreter: prints its arguments, one per line."""
    path = tmp_path_factory.mktemp("bin") / "print_args"
    path.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def _script_argv(print_args, name, *flags, **env):
    """The training flags a script passes on to ``train_softmax.py``."""
    out = subprocess.run(["bash", os.path.join(ROOT, "recipes", f"{name}.sh"), *flags],
                         env=dict(os.environ, PYTHON=print_args, **env), capture_output=True, text=True,
                         check=True, timeout=30).stdout.splitlines()
    assert out[:2] == ["-u", os.path.join(ROOT, "train_softmax.py")]
    return out[2:]


def test_every_yaml_recipe_has_a_script():
    ymls = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "recipes", "*.yml")))
    assert RECIPES == ymls and RECIPES
    for name in RECIPES:
        assert os.access(os.path.join(ROOT, "recipes", f"{name}.sh"), os.X_OK), name


@pytest.mark.parametrize("name", RECIPES)
def test_script_and_yaml_give_the_same_config(print_args, name):
    from_script, _ = parse_config(_script_argv(print_args, name))
    from_yaml, _ = parse_config([f"@{os.path.join(ROOT, 'recipes', name + '.yml')}"])
    differ = [f.name for f in dataclasses.fields(from_yaml) if f.name not in PER_MACHINE
              and getattr(from_script, f.name) != getattr(from_yaml, f.name)]
    assert not differ, differ
    assert from_script.prefix == from_yaml.prefix  # the default PREFIX is the yaml's


def test_environment_chooses_data_devices_prefix_and_extra_flags_win(print_args):
    argv = _script_argv(print_args, "y1_arcface_stage2", DATA_DIR="/d x/data", GPUS="", PREFIX="p/m", PRETRAINED="s,3")
    cfg, _ = parse_config(argv + ["--lr", "0.01"])
    assert (cfg.data_dir, cfg.gpus, cfg.prefix, cfg.pretrained) == ("/d x/data", "", "p/m", "s,3")
    argv = _script_argv(print_args, "r100_arcface_ms1m", DATA_DIR="", GPUS="0,1", PRETRAINED="")
    assert "--data-dir" not in argv and argv[argv.index("--gpus") + 1] == "0,1"
    assert _script_argv(print_args, "y1_arcface_stage2", PRETRAINED="").count("--pretrained") == 0
    cfg, _ = parse_config(_script_argv(print_args, "m1_softmax", "--lr", "0.01", "--prefix", "a b/m"))
    assert cfg.lr == 0.01 and cfg.prefix == "a b/m"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """``{face side: dataset}``: 112x112 faces for MobileFaceNet's GDC head, 32x32 for the rest."""
    root = tmp_path_factory.mktemp("recipes")
    out = {}
    for side in (32, 112):
        out[side] = make_tiny_dataset(root, num_ids=4, per_id=6, size=side, name=f"faces{side}")
        make_tiny_bin(os.path.join(out[side], "lfw.bin"), num_pairs=10, size=side)
    return out


# Small enough for one batch on a CPU core: the recipe's network and loss, a batch of 10 (a multiple of the
# triplet recipe's 5 images per identity), one verification set; 32x32 faces, a 16-d embedding and a quarter
# of the width where the family reads --version-multiplier (the GDC head of y1 needs 112x112 faces).
BUDGET = ["--max-steps", "1", "--per-batch-size", "10", "--data-workers", "0", "--tensorboard", "0",
          "--target", "lfw", "--frequent", "1"]
SMALL = ["--image-size", "32,32", "--emb-size", "16", "--version-multiplier", "0.25"]
# DPN-107 reads no width multiplier: 87 M parameters even on 32x32 faces
HEAVY = {"p107_softmax_vgg2": pytest.mark.budget(reason="DPN-107 (87 M parameters) trains one batch",
                                                 memory_gib=2.5, cpu_seconds=30, alone=True)}


def _run_script(name, tiny_data, prefix, *extra, pretrained=""):
    small = not name.startswith("y1_")
    env = dict(os.environ, PYTHON=sys.executable, DATA_DIR=tiny_data[32 if small else 112], GPUS="",
               PREFIX=str(prefix), PRETRAINED=pretrained, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", os.path.join(ROOT, "recipes", f"{name}.sh"), *BUDGET,
                           *(SMALL if small else []), *extra], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=HEAVY[n]) if n in HEAVY else n
                                  for n in RECIPES if n != "y1_arcface_stage2"])
def test_every_script_runs_dry_on_tiny_data(print_args, name, tiny_data, tmp_path):
    log = _run_script(name, tiny_data, tmp_path / "m", "--dry-run")
    network = parse_config(_script_argv(print_args, name))[0].network
    assert f"config network: '{network}'" in log and "Epoch[0] Batch [1-1]" in log
    assert not os.listdir(tmp_path)  # a dry run writes nothing


@pytest.mark.slow
@pytest.mark.budget(reason="two recipe scripts, each a fresh interpreter with MXNet", memory_gib=1.5)
def test_two_stage_scripts_chain_through_a_checkpoint(tiny_data, tmp_path):
    stage1 = tmp_path / "y1-softmax" / "model"
    _run_script("y1_softmax_stage1", tiny_data, stage1, "--verbose", "1")
    assert os.path.isfile(f"{stage1}-0001.params")
    log = _run_script("y1_arcface_stage2", tiny_data, tmp_path / "y1-arcface" / "model", "--dry-run",
                      pretrained=f"{stage1},1")
    assert "config loss: 'arcface'" in log and "loaded" in log
