"""face2rec, pack-bin, inspect and synth, each driven once in-process on tiny data, plus their bad inputs."""
import os
import pickle
import subprocess
import sys

import pytest

from _datautil import make_tiny_bin, make_tiny_dataset, tiny_face
from insightgluon.cli import face2rec, inspect as inspect_cli, pack_bin, synth
from insightgluon.data.bin import load_bin
from insightgluon.data.image import encode_jpeg
from insightgluon.data.recordio import FaceRecordDataset
from insightgluon.errors import DataFormatError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture
def faces(tmp_path):
    """A folder tree: two identities, a PNG of another size, a README and a corrupt JPEG."""
    import cv2

    root = tmp_path / "faces"
    for k, name in enumerate(["bob", "alice"]):
        for i in range(2):
            _write(str(root / name / f"{i}.jpg"), encode_jpeg(tiny_face(k, i)))
    ok, png = cv2.imencode(".png", tiny_face(1, 5, size=150))
    _write(str(root / "alice" / "big.png"), png.tobytes())
    _write(str(root / "alice" / "notes.txt"), b"not an image")
    _write(str(root / "bob" / "broken.jpg"), b"\xff\xd8 truncated")
    return root


def test_face2rec_folder(tmp_path, faces, capsys):
    out = str(tmp_path / "rec")
    assert face2rec.main([str(faces), "--output", out]) == 0
    report = capsys.readouterr().out
    assert "5 images, 2 identities" in report and "skipped 1 non-image files, 1 undecodable images" in report
    ds = FaceRecordDataset(out)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]  # alice (sorted first): 0.jpg 1.jpg big.png; bob: 0 1
    assert ds.read(0)[1] == (faces / "alice" / "0.jpg").read_bytes()  # aligned JPEG kept verbatim
    assert ds[2][0].shape == (112, 112, 3)  # the 150x150 PNG was resized and re-encoded


def test_face2rec_lst_with_landmarks(tmp_path):
    img = tiny_face(3, size=200)
    _write(str(tmp_path / "raw" / "a.jpg"), encode_jpeg(img))
    _write(str(tmp_path / "raw" / "b.jpg"), encode_jpeg(tiny_face(4)))
    marks = "\t".join(str(v) for v in [70, 130, 100, 75, 125, 80, 80, 105, 130, 130])
    lst = tmp_path / "train.lst"
    lst.write_text(f"1\traw/b.jpg\t1\n0\traw/a.jpg\t0\t10\t10\t190\t190\t{marks}\n0\traw/a.jpg\t0\n")
    assert face2rec.main([str(lst)]) == 0  # output defaults to the .lst directory (legacy)
    ds = FaceRecordDataset(str(tmp_path))
    assert ds.labels.tolist() == [0, 1] and ds[0][0].shape == (112, 112, 3)


@pytest.mark.parametrize("text,match", [
    ("1\ta.jpg\n", r"train.lst: line 1: expected 'aligned<TAB>path<TAB>label"),
    ("1\ta.jpg\t0\t1\t2\n", r"train.lst: line 1: 2 numbers after the label"),
    ("1\ta.jpg\t0\n1\ta.jpg\t2\n", r"train.lst: labels must be 0..N-1 without gaps \(missing \[1\]"),
    ("1\tmissing.jpg\t0\n", r"identity 0 has no decodable image"),
])
def test_face2rec_bad_lst(tmp_path, text, match):
    _write(str(tmp_path / "a.jpg"), encode_jpeg(tiny_face(0)))
    (tmp_path / "train.lst").write_text(text)
    with pytest.raises(DataFormatError, match=match):
        face2rec.main([str(tmp_path / "train.lst"), "-o", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_face2rec_empty_folders(tmp_path):
    (tmp_path / "root" / "carol").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"root/carol: identity folder has no image files"):
        face2rec.main([str(tmp_path / "root"), "-o", str(tmp_path / "out")])
    with pytest.raises(DataFormatError, match=r"empty: no identity sub-folders"):
        (tmp_path / "empty").mkdir()
        face2rec.main([str(tmp_path / "empty"), "-o", str(tmp_path / "out")])


def test_pack_bin_lfw_and_simple_formats(tmp_path, capsys):
    for name, n in (("Ann", 2), ("Bo", 1)):
        for i in range(1, n + 1):
            _write(str(tmp_path / "lfw" / name / f"{name}_{i:04d}.jpg"), encode_jpeg(tiny_face(len(name), i)))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t2\nAnn\t1\t2\nAnn\t1\tBo\t1\n")
    out = str(tmp_path / "lfw.bin")
    assert pack_bin.main([str(pairs), "-o", out, "--image-root", str(tmp_path / "lfw")]) == 0
    assert "2 pairs (1 same, 1 different)" in capsys.readouterr().out
    with open(out, "rb") as f:  # what the legacy Python 3 reader does
        bins, issame = pickle.load(f, encoding="bytes")
    assert issame == [True, False] and bins[0] == (tmp_path / "lfw/Ann/Ann_0001.jpg").read_bytes()
    simple = tmp_path / "simple.txt"
    simple.write_text("lfw/Ann/Ann_0001.jpg lfw/Bo/Bo_0001.jpg 0\n")
    assert pack_bin.main([str(simple), "-o", str(tmp_path / "s.bin")]) == 0
    assert load_bin(str(tmp_path / "s.bin"))[1].tolist() == [False]
    simple.write_text("lfw/Ann/Ann_0001.jpg lfw/Nobody.jpg 1\n")
    with pytest.raises(DataFormatError, match=r"simple.txt: line 1: image .*Nobody.jpg does not exist"):
        pack_bin.main([str(simple), "-o", str(tmp_path / "x.bin")])
    simple.write_text("a b c d e\n")
    with pytest.raises(DataFormatError, match=r"simple.txt: line 1: expected 'name n1 n2'"):
        pack_bin.main([str(simple), "-o", str(tmp_path / "x.bin")])


def test_inspect_rec_and_bin(tmp_path, capsys):
    ds_dir = make_tiny_dataset(tmp_path, num_ids=3, per_id=2)
    assert inspect_cli.main([ds_dir, "--dump", "4", str(tmp_path / "dump"),
                             "--unpack", str(tmp_path / "unpacked")]) == 0
    out = capsys.readouterr().out
    assert "images: 6" in out and "identities: 3 with images" in out and "histogram" in out
    assert len(os.listdir(tmp_path / "dump")) == 4
    assert sorted(os.listdir(tmp_path / "unpacked")) == ["0000000", "0000001", "0000002"]
    assert face2rec.main([str(tmp_path / "unpacked"), "-o", str(tmp_path / "again")]) == 0  # round trip
    again = FaceRecordDataset(str(tmp_path / "again"))
    assert [again.read(i) for i in range(6)] == [FaceRecordDataset(ds_dir).read(i) for i in range(6)]
    capsys.readouterr()
    bin_path = make_tiny_bin(tmp_path / "t.bin", num_pairs=4)
    assert inspect_cli.main([bin_path, "--dump", "2", str(tmp_path / "pairs")]) == 0
    assert "pairs: 4 (2 same, 2 different)" in capsys.readouterr().out
    assert len(os.listdir(tmp_path / "pairs")) == 4


def test_synth_cli_and_console_errors(tmp_path, capsys):
    out = str(tmp_path / "synth")
    assert synth.main(["-o", out, "--num-ids", "3", "--imgs-per-id", "2", "--num-val-ids", "2",
                       "--pairs", "4", "--workers", "1", "--preview", str(tmp_path / "p.png")]) == 0
    text = capsys.readouterr().out
    assert "images: 6" in text and text.count("pairs: 4 (2 same, 2 different)") == 3
    assert os.path.getsize(tmp_path / "p.png") > 1000


def test_legacy_shim_reports_one_line_error(tmp_path):
    # datasets/inspect.py must not shadow the standard library's inspect module
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"junk")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "datasets", "inspect.py"), str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{bad}: not a .bin pickle" in proc.stderr and "Traceback" not in proc.stderr
