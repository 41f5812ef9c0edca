"""``insightgluon megaface`` gen -> remove-noises -> evaluate, identify and devkit, on tiny data."""
import json
import logging
import os
import sys

import cv2
import numpy as np
import pytest

from insightgluon.cli import main as cli_main
from insightgluon.eval.megaface import read_feature
from tests.test_eval_cli import export_tiny_model


def _face(rng, centre, size=16):
    """A 4x4-block image near ``centre`` (blocks survive the tiny model's pooling)."""
    blocks = np.clip(centre + rng.normal(0, 12, centre.shape), 0, 255).astype(np.uint8)
    return blocks.repeat(size // 4, axis=0).repeat(size // 4, axis=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mf")
    rng = np.random.default_rng(0)
    export_tiny_model(root / "m", 1, seed=3)
    fs_lines, mf_lines = [], []
    for person in ("Ann_A", "Bob_B", "Cid_C"):
        centre = rng.uniform(0, 255, (4, 4, 3))
        for k in range(3):
            rel = f"facescrub/{person}/{person}_{k}.png"
            os.makedirs(root / "facescrub" / person, exist_ok=True)
            cv2.imwrite(str(root / rel), _face(rng, centre))
            fs_lines.append(f"1\t{rel}\t0")
    for k in range(12):
        rel = f"megaface/{k % 3}/u{k}@N00/{k}_0.jpg"
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        cv2.imwrite(str(root / rel), _face(rng, rng.uniform(0, 255, (4, 4, 3))))
        mf_lines.append(f"1\t{rel}\t0")
    (root / "fs.lst").write_text("\n".join(fs_lines) + "\n")
    (root / "mf.lst").write_text("\n".join(mf_lines) + "\n")
    (root / "fs_noises.txt").write_text("#rules\nBob_B_1.png\n")
    (root / "mf_noises.txt").write_text("#rules\n1/u4@N00/4_0.jpg\n")
    return root


def test_gen_remove_noises_evaluate(tiny, capsys):
    r = tiny
    model = ["--model", f"{r / 'm'},1|{r / 'm'},1", "--image-size", "3,16,16", "--batch-size", "4"]
    assert cli_main(["megaface", "gen", *model, "--algo", "tiny", "--facescrub-lst", str(r / "fs.lst"),
                     "--megaface-lst", str(r / "mf.lst"), "--output", str(r / "feat")]) == 0
    out = capsys.readouterr().out
    assert "facescrub: 9 features written" in out and "megaface: 12 features written" in out
    feat = read_feature(str(r / "feat/facescrub/Ann_A/Ann_A_0.png_tiny_16x16.bin"))
    assert feat.shape == (16,) and np.isclose(np.linalg.norm(feat), 1.0, atol=1e-5)
    # two copies of one model: each half is the same unit vector / sqrt(2)
    np.testing.assert_allclose(feat[:8], feat[8:], atol=1e-6)
    assert os.path.isfile(r / "feat/megaface/1/u4@N00/4_0.jpg_tiny_16x16.bin")

    assert cli_main(["megaface", "remove-noises", "--facescrub-noises", str(r / "fs_noises.txt"),
                     "--megaface-noises", str(r / "mf_noises.txt"), "--facescrub-lst", str(r / "fs.lst"),
                     "--megaface-lst", str(r / "mf.lst"), "--suffix", "tiny_16x16", "--algo", "tiny",
                     "--facescrub-feature-dir", str(r / "feat/facescrub"),
                     "--megaface-feature-dir", str(r / "feat/megaface"),
                     "--facescrub-feature-dir-out", str(r / "clean/facescrub"),
                     "--megaface-feature-dir-out", str(r / "clean/megaface")]) == 0
    assert "facescrub_noisy=1" in capsys.readouterr().out
    assert read_feature(str(r / "clean/megaface/1/u4@N00/4_0.jpg_tiny.bin"))[-1] == 100.0

    assert cli_main(["megaface", "evaluate", str(r / "clean/megaface"), str(r / "clean/facescrub"), "_tiny.bin",
                     str(r / "results"), "-s", "10,12", "--far", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "9 probes of 3 identities, 12 distractors" in out and "distractors       12: rank1=" in out
    res = json.loads((r / "results/megaface_results.json").read_text())
    assert [x["distractors"] for x in res["results"]] == [10, 12] and res["num_pairs"] == 18
    assert res["results"][-1]["rank1"] >= 0.5  # identities are far apart in image space


def test_identify_on_an_identity_folder(tiny, capsys):
    r = tiny
    assert cli_main(["megaface", "identify", "--model", f"{r / 'm'},1", "--image-size", "16,16",
                     "--data", str(r / "facescrub"), "--distractors", str(r / "megaface"),
                     "--json", str(r / "id.json")]) == 0
    out = capsys.readouterr().out
    assert "gallery 15 (12 distractors), probes 6" in out and "rank-1: " in out
    res = json.loads((r / "id.json").read_text())
    assert res["num_probes"] == 6 and len(res["cmc"]) == 10 and res["cmc"][-1] >= res["rank1"]


def test_devkit_wrapper_and_bad_inputs(tiny, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    args = [str(tmp_path / "d"), str(tmp_path / "p"), "_x.bin", str(tmp_path / "o")]
    assert cli_main(["megaface", "devkit", "--devkit-dir", str(tmp_path), *args]) == 2
    assert "run_experiment.py: not found" in caplog.text
    (tmp_path / "run_experiment.py").write_text(
        "import sys\nopen('called.txt', 'w').write(' '.join(sys.argv[1:]))\n")
    assert cli_main(["megaface", "devkit", "--devkit-dir", str(tmp_path), "--python", sys.executable,
                     *args, "-s", "10,100", "-p", "list.json"]) == 0
    assert (tmp_path / "called.txt").read_text() == " ".join(args + ["-s", "10", "100", "-p", "list.json"])
    assert cli_main(["megaface", "evaluate", str(tmp_path), str(tmp_path / "none"), "_x.bin"]) == 2
    assert "no such feature folder" in caplog.text
    assert cli_main(["megaface", "evaluate", str(tiny), str(tiny), "_nothing.bin"]) == 2
    assert "no feature files ending in '_nothing.bin'" in caplog.text
    assert cli_main(["megaface", "identify", "--model", f"{tiny / 'm'},1", "--data", str(tmp_path / "no")]) == 2
    assert "no such identity folder" in caplog.text
