"""``insightgluon align`` on every photo format OpenCV reads, grey-scale or colour, and ``--ext``.

A stand-in detector returns the same five landmarks for every photo, so these tests need
no detector weights and take well under a second each.
"""
import logging
import os

import cv2
import numpy as np
import pytest

from insightgluon.align.transform import REFERENCE_112
from insightgluon.cli import main as cli_main
from insightgluon.data.bin import load_bin
from insightgluon.data.image import crop_extension
from insightgluon.data.recordio import FaceRecordDataset
from insightgluon.errors import ConfigError

MARKS = REFERENCE_112 * 1.5 + 20  # a face 1.5x the template size in a 250x250 photo


class _Landmarks:
    """Stands in for MTCNN: one face with :data:`MARKS` in every photo."""

    def detect_batch(self, images):
        box = np.array([[20, 20, 188, 188, 0.99]], np.float32)
        return [(box, MARKS[None].astype(np.float32)) for _ in images]


@pytest.fixture(autouse=True)
def _no_mtcnn(monkeypatch):
    import insightgluon.cli.align as cli

    monkeypatch.setattr(cli, "_detector", lambda args: _Landmarks())


def _photo(identity: int, k: int, grey: bool) -> np.ndarray:
    rng = np.random.default_rng([identity, k])
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (25, 25, 3), dtype=np.uint8), 10, 0), 10, 1)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if grey else rgb


def _photo_tree(root, ext: str, grey: bool):
    """``root/<person>/<person>_000k.<ext>``: two people, two photos each; and a simple pairs file."""
    for i, person in enumerate(("Ann_A", "Bob_B")):
        os.makedirs(root / person, exist_ok=True)
        for k in (1, 2):
            image = _photo(i, k, grey)
            image = image if grey else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            assert cv2.imwrite(str(root / person / f"{person}_{k:04d}.{ext}"), image), ext
    pairs = root.parent / "pairs.txt"
    pairs.write_text(f"Ann_A/Ann_A_0001.{ext} Ann_A/Ann_A_0002.{ext} 1\n"
                     f"Ann_A/Ann_A_0001.{ext} Bob_B/Bob_B_0001.{ext} 0\n")
    return pairs


FORMATS = [("jpg", False), ("jpg", True), ("jpeg", False), ("png", False), ("png", True), ("bmp", False),
           ("bmp", True), ("pgm", True), ("ppm", False), ("tif", False), ("tif", True), ("tiff", False),
           ("webp", False), ("pnm", False)]


@pytest.mark.parametrize("ext,grey", FORMATS, ids=[f"{e}-{'grey' if g else 'colour'}" for e, g in FORMATS])
def test_every_format_aligns_under_the_same_stem_with_lst_bin_and_rec(tmp_path, ext, grey, capsys):
    pairs = _photo_tree(tmp_path / "photos", ext, grey)
    out = tmp_path / "out"
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(out), "--to-rec",
                     str(tmp_path / "rec"), "--pairs", str(pairs), "--bin", str(tmp_path / "lfw.bin")]) == 0
    assert "detected 4" in capsys.readouterr().out
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob(f"*.{ext}"))
    assert crops == [f"Ann_A/Ann_A_0001.{ext}", f"Ann_A/Ann_A_0002.{ext}", f"Bob_B/Bob_B_0001.{ext}",
                     f"Bob_B/Bob_B_0002.{ext}"]
    crop = cv2.imread(str(out / crops[0]), cv2.IMREAD_UNCHANGED)
    assert crop.shape[:2] == (112, 112)
    if ext == "pgm":
        assert crop.ndim == 2  # PGM holds grey images only
    lst = (out / "aligned.lst").read_text().splitlines()
    assert [line.split("\t")[1].endswith(f".{ext}") for line in lst] == [True] * 4
    ds = FaceRecordDataset(str(tmp_path / "rec"))
    assert len(ds) == 4 and ds.num_classes == 2 and ds[0][0].shape == (112, 112, 3)
    bins, issame = load_bin(str(tmp_path / "lfw.bin"))
    assert len(bins) == 4 and issame.tolist() == [True, False]
    if grey:  # a grey photo stays grey through alignment and packing
        rgb = ds[0][0]
        assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2]).max() <= 3


def test_ext_converts_and_lfw_pairs_find_crops_of_any_format(tmp_path):
    _photo_tree(tmp_path / "photos", "pgm", grey=True)
    (tmp_path / "lfw_pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t2\n")  # names .jpg photos
    out = tmp_path / "png"
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(out), "--ext", ".PNG",
                     "--pairs", str(tmp_path / "lfw_pairs.txt"), "--bin", str(tmp_path / "a.bin")]) == 0
    assert sorted(p.name for p in out.rglob("*.png")) == ["Ann_A_0001.png", "Ann_A_0002.png", "Bob_B_0001.png",
                                                          "Bob_B_0002.png"]
    assert len(load_bin(str(tmp_path / "a.bin"))[0]) == 4
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "pgm"),
                     "--pairs", str(tmp_path / "lfw_pairs.txt"), "--bin", str(tmp_path / "b.bin")]) == 0
    assert len(load_bin(str(tmp_path / "b.bin"))[0]) == 4


def test_a_format_that_cannot_hold_a_crop_falls_back_to_jpg(tmp_path):
    os.makedirs(tmp_path / "photos" / "Ann_A")
    assert cv2.imwrite(str(tmp_path / "photos" / "Ann_A" / "a.pbm"), _photo(0, 1, grey=True))
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "Ann_A" / "a.jpg").is_file()
    assert crop_extension(".PBM") == ".jpg" and crop_extension(".gif") == ".jpg"
    assert crop_extension(".pgm") == ".pgm" and crop_extension(".pgm", "png") == ".png"


def test_bad_ext_and_colliding_names_are_one_line_errors(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    _photo_tree(tmp_path / "photos", "png", grey=False)
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "o"),
                     "--ext", "pbm"]) == 2
    assert "--ext pbm: crops cannot be written as '.pbm'; choose one of: bmp," in caplog.text
    assert not (tmp_path / "o").exists()
    assert cv2.imwrite(str(tmp_path / "photos" / "Ann_A" / "Ann_A_0001.jpg"), _photo(0, 1, grey=False))
    assert cli_main(["align", "--input", str(tmp_path / "photos"), "--output", str(tmp_path / "o"),
                     "--ext", "jpg"]) == 2
    assert "Ann_A/Ann_A_0001.jpg and Ann_A/Ann_A_0001.png would both be written as Ann_A/Ann_A_0001.jpg" \
        in caplog.text
    with pytest.raises(ConfigError):
        crop_extension(".png", "gif")
