"""Every command checks where it writes before its work starts; no OS error reaches the user as a traceback.

Each subcommand is pointed at an output below a regular file (a folder that cannot be
created, whoever runs the tests) and must stop at once with one error line naming that
output and exit status 2. Missing parent folders are created.
"""
import logging
import os
import time

import pytest

from _datautil import make_tiny_bin, make_tiny_dataset, tiny_face
from insightgluon.cli import main as cli_main
from insightgluon.errors import ConfigError
from insightgluon.outputs import output_dir, output_file, output_prefix


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Tiny inputs for every subcommand, and ``file``: a regular file nothing can be created under."""
    import cv2

    root = tmp_path_factory.mktemp("outputs")
    data = make_tiny_dataset(root, num_ids=2, per_id=2, size=112)
    make_tiny_bin(os.path.join(data, "lfw.bin"), num_pairs=10)
    for person in ("Ann_A", "Bob_B"):
        os.makedirs(root / "photos" / person)
        for k in (1, 2):
            cv2.imwrite(str(root / "photos" / person / f"{person}_{k:04d}.jpg"), tiny_face(len(person), k))
    (root / "pairs.txt").write_text("Ann_A 1 2\nAnn_A 1 Bob_B 1\n")
    (root / "file").write_text("a regular file\n")
    return root


def _blocked(ws, name):
    return str(ws / "file" / name)


def _cases(ws):
    """``(subcommand argv, blocked output)`` for every output of every subcommand."""
    r, data, photos, pairs = ws, str(ws / "tiny"), str(ws / "photos"), str(ws / "pairs.txt")
    model = str(ws / "no-model")
    b = {name: _blocked(ws, name) for name in ("out", "x.bin", "x.json", "x.png", "x.onnx", "m", "report.tsv",
                                               "x.lst", "rec", "roc", "dump")}
    mf_common = ["--facescrub-noises", pairs, "--megaface-noises", pairs, "--facescrub-lst", pairs,
                 "--megaface-lst", pairs, "--facescrub-feature-dir", str(r), "--megaface-feature-dir", str(r),
                 "--suffix", "s"]
    return {
        "synth": (["synth", "--output", b["out"]], b["out"]),
        "synth --preview": (["synth", "--output", str(r / "s"), "--preview", b["x.png"]], b["x.png"]),
        "align": (["align", "--input", photos, "--output", b["out"]], b["out"]),
        "align --report": (["align", "--input", photos, "--output", str(r / "a"), "--report", b["report.tsv"]],
                           b["report.tsv"]),
        "align --lst": (["align", "--input", photos, "--output", str(r / "a"), "--lst", b["x.lst"]], b["x.lst"]),
        "align --bin": (["align", "--input", photos, "--output", str(r / "a"), "--pairs", pairs,
                         "--bin", b["x.bin"]], b["x.bin"]),
        "align --to-rec": (["align", "--input", photos, "--output", str(r / "a"), "--to-rec", b["rec"]], b["rec"]),
        "face2rec": (["face2rec", photos, "--output", b["out"]], b["out"]),
        "pack-bin": (["pack-bin", pairs, "--image-root", photos, "--output", b["x.bin"]], b["x.bin"]),
        "inspect --dump": (["inspect", data, "--dump", "2", b["dump"]], b["dump"]),
        "inspect --unpack": (["inspect", data, "--unpack", b["dump"]], b["dump"]),
        "train": (["train", "--data-dir", data, "--prefix", b["m"]], b["m"]),
        "demo": (["demo", "--output", b["out"]], b["out"]),
        "verify --json": (["verify", "--model", f"{model},1", "--data-dir", data, "--json", b["x.json"]],
                          b["x.json"]),
        "verify --roc-dir": (["verify", "--model", f"{model},1", "--data-dir", data, "--roc-dir", b["roc"]],
                             b["roc"]),
        "export": (["export", "--model", f"{model},1", "--output", b["x.onnx"]], b["x.onnx"]),
        "export --strip-fc7": (["export", "--model", f"{model},1", "--strip-fc7", b["m"]], b["m"]),
        "megaface gen": (["megaface", "gen", "--model", f"{model},1", "--facescrub-lst", pairs,
                          "--output", b["out"]], b["out"]),
        "megaface remove-noises": (["megaface", "remove-noises", *mf_common, "--facescrub-feature-dir-out",
                                    b["out"], "--megaface-feature-dir-out", str(r / "mf")], b["out"]),
        "megaface evaluate": (["megaface", "evaluate", str(r), str(r), "_x.bin", b["out"]], b["out"]),
        "megaface devkit": (["megaface", "devkit", "--devkit-dir", str(r), str(r), str(r), "_x.bin", b["out"]],
                            b["out"]),
        "megaface identify": (["megaface", "identify", "--model", f"{model},1", "--data", photos,
                               "--json", b["x.json"]], b["x.json"]),
        "ijb --features": (["ijb", "--model", f"{model},1", "--data-root", str(r), "--features", b["x.bin"]],
                           b["x.bin"]),
        "ijb --roc": (["ijb", "--features", pairs, "--data-root", str(r), "--roc", b["x.png"]], b["x.png"]),
        "convert": (["convert", str(r / "no-backbone.pth"), "--output", b["m"]], b["m"]),
        "face recognize": (["face", "recognize", photos, "--gallery", photos, "--model", f"{model},1",
                            "--threshold", "0.5", "--output", b["out"]], b["out"]),
    }


CASES = ["synth", "synth --preview", "align", "align --report", "align --lst", "align --bin", "align --to-rec",
         "face2rec", "pack-bin", "inspect --dump", "inspect --unpack", "train", "demo", "verify --json",
         "verify --roc-dir", "export", "export --strip-fc7", "megaface gen", "megaface remove-noises",
         "megaface evaluate", "megaface devkit", "megaface identify", "ijb --features", "ijb --roc",
         "convert", "face recognize"]


@pytest.mark.parametrize("case", CASES)
def test_unwritable_output_is_one_line_before_any_work(ws, case, caplog):
    argv, blocked = _cases(ws)[case]
    caplog.set_level(logging.INFO)
    tic = time.process_time()  # CPU time: a loaded machine does not change it
    assert cli_main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert blocked in errors[0] or os.path.dirname(blocked) in errors[0], errors[0]
    assert time.process_time() - tic < 5  # stopped before the work: no model, detector or data was loaded


def test_every_writing_subcommand_has_a_case():
    from insightgluon.cli import SUBCOMMANDS

    writes_nothing = {"networks"}
    # face verify/search write only a gallery cache, skipped with a warning when read-only
    covered = {case.split()[0] for case in CASES}
    assert covered | writes_nothing == set(SUBCOMMANDS)


def test_checks_create_parents_and_name_the_problem(tmp_path):
    assert output_file(str(tmp_path / "a" / "b" / "x.bin"), "--output")
    assert (tmp_path / "a" / "b").is_dir() and not (tmp_path / "a" / "b" / "x.bin").exists()
    assert output_dir(str(tmp_path / "c" / "d"))
    assert (tmp_path / "c").is_dir() and not (tmp_path / "c" / "d").exists()  # the writer makes the folder
    assert output_prefix(str(tmp_path / "m" / "model"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"--output .*f/x\.bin: .*f exists and is not a folder"):
        output_file(str(tmp_path / "f" / "x.bin"), "--output")
    with pytest.raises(ConfigError, match=r"--bin .*f/y/x\.bin: cannot create folder .*f/y \(Not a directory"):
        output_file(str(tmp_path / "f" / "y" / "x.bin"), "--bin")
    with pytest.raises(ConfigError, match="is a folder, expected a file name"):
        output_file(str(tmp_path / "c"), "--json")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        output_dir(str(tmp_path / "f"), "--dump")
    with pytest.raises(ConfigError, match="expected a folder and a file-name start"):
        output_prefix(str(tmp_path) + "/")


def test_align_bin_into_a_folder_that_does_not_exist_yet(ws, tmp_path, monkeypatch, capsys):
    """The 2018 habit ``--bin out/lfw.bin`` with no ``out/`` yet: the folder is created."""
    import insightgluon.cli.align as cli

    monkeypatch.setattr(cli, "_detector", lambda args: _NoFaces())
    assert cli_main(["align", "--input", str(ws / "photos"), "--output", str(tmp_path / "aligned"),
                     "--pairs", str(ws / "pairs.txt"), "--bin", str(tmp_path / "out" / "lfw.bin")]) == 0
    assert (tmp_path / "out" / "lfw.bin").is_file()
    assert "2 pairs" in capsys.readouterr().out


def test_an_os_error_during_the_work_is_one_line(tmp_path, caplog):
    (tmp_path / "pack.bin").mkdir()  # a folder where a .bin file is expected
    assert cli_main(["inspect", str(tmp_path / "pack.bin")]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(tmp_path / "pack.bin") in errors[0], errors


class _NoFaces:
    """Stands in for MTCNN: finds no face, so every photo gets the legacy centre crop."""

    def detect_batch(self, images):
        import numpy as np

        return [(np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)) for _ in images]
