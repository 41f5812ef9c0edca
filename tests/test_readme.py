"""The README's "Using it" lines, run in order on tiny data, as a user in a fresh clone would type them.

Each line runs as written, with two exceptions that only shrink the work: ``synth`` makes a
few identities and ``train_softmax.py`` trains two batches of 4 with a quarter of the network's
width and a 16-d embedding (flags appended; typed flags win), and a training line without
``--prefix`` runs with ``--dry-run`` (its legacy prefix ``../model`` lies outside the folder). The
inputs the README leaves to the user (``photos/``, ``lfw/`` with ``pairs.txt``, ``a.jpg``,
``b.jpg``) are made here, and ``INSIGHTGLUON_DATA`` points at a tiny dataset so that nothing is
written to the user's cache.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from _datautil import tiny_face

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET = {
    "synth": ["--num-ids", "6", "--imgs-per-id", "4", "--num-val-ids", "6", "--pairs", "10", "--workers", "1"],
    "train_softmax.py": ["--max-steps", "2", "--verbose", "2", "--per-batch-size", "4", "--data-workers", "0",
                         "--tensorboard", "0", "--frequent", "1", "--version-multiplier", "0.25",
                         "--emb-size", "16"],
}


def readme_lines():
    """The command lines of the bash block in the README's "Using it" section (comments dropped)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()
            if line.strip()]


def _argv(words):
    """The process to start for a README line, with the budget flags."""
    if words[0] == "insightgluon":
        argv = [sys.executable, "-m", "insightgluon", *words[1:]]
        return argv + BUDGET.get(words[1], [])
    assert words[:3] == ["python", "-u", "train_softmax.py"], words
    argv = [sys.executable, "-u", os.path.join(ROOT, "train_softmax.py"), *words[3:]]
    return argv + BUDGET["train_softmax.py"] + ([] if "--prefix" in words else ["--dry-run"])


def _save(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _user_pictures(folder):
    """photos/ (two people, two formats), lfw/ with pairs.txt, and two photos of one face."""
    from skimage import data

    face = cv2.resize(data.astronaut(), (250, 250), interpolation=cv2.INTER_AREA)
    _save(os.path.join(folder, "a.jpg"), face)
    _save(os.path.join(folder, "b.jpg"), np.ascontiguousarray(face[:, ::-1]))
    for person, identity in (("Ann_A", 1), ("Bob_B", 2)):
        for k in (1, 2, 3):
            _save(os.path.join(folder, "photos", person, f"{person}_{k:04d}.png"), tiny_face(identity, k))
            _save(os.path.join(folder, "lfw", person, f"{person}_{k:04d}.jpg"), tiny_face(identity, k))
    grey = cv2.cvtColor(tiny_face(3, 0), cv2.COLOR_RGB2GRAY)
    for k in (1, 2):
        os.makedirs(os.path.join(folder, "photos", "Cid_C"), exist_ok=True)
        assert cv2.imwrite(os.path.join(folder, "photos", "Cid_C", f"{k}.pgm"), np.roll(grey, k, axis=1))
    with open(os.path.join(folder, "pairs.txt"), "w") as f:
        f.write("2\t2\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t1\nBob_B\t2\t3\nAnn_A\t3\tBob_B\t2\n")


def test_readme_lines_are_commands_of_this_toolkit():
    lines = readme_lines()
    assert len(lines) >= 10
    tools = {w[1] for w in lines if w[0] == "insightgluon"}
    assert {"synth", "align", "face2rec", "pack-bin", "inspect", "verify", "export", "face", "megaface"} <= tools


@pytest.mark.slow
@pytest.mark.budget(reason="the README's eleven commands, each a fresh process as a user types them",
                    cpu_seconds=45)
@pytest.mark.skipif(importlib.util.find_spec("mtcnn") is None, reason="face detection needs the 'mtcnn' wheel")
def test_readme_using_it_runs_as_written(tmp_path):
    from insightgluon.data.synthetic import make_synthetic_dataset

    clone = tmp_path / "clone"
    _user_pictures(str(clone))
    cache = make_synthetic_dataset(str(tmp_path / "cache"), num_ids=4, imgs_per_id=4, num_val_ids=4,
                                   pairs_per_bin=20)
    env = dict(os.environ, OMP_NUM_THREADS="1", INSIGHTGLUON_DATA=cache)
    for words in readme_lines():
        proc = subprocess.run(_argv(words), cwd=clone, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{' '.join(words)}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for made in ("data/faces_synth_112x112/property", "models/r50/model-0001.params", "r50.onnx",
                 "aligned/Cid_C/1.pgm", "aligned/train.rec", "data/mine/train.rec", "data/mine/lfw.bin"):
        assert (clone / made).exists(), made
    assert not (tmp_path / "model").exists()  # the dry run wrote nothing
