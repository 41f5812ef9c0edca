"""``insightgluon align`` end to end on tiny folders, landmark lists and the on-the-fly dataset."""
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from insightgluon.align.export import write_pairs_bin
from insightgluon.align.landmarks import LandmarkListDataset, read_landmark_file
from insightgluon.align.layouts import build_jobs, read_image_list, read_metadata_box
from insightgluon.align.transform import REFERENCE_112
from insightgluon.cli.align import main
from insightgluon.errors import ConfigError, DataFormatError

needs_weights = pytest.mark.skipif(importlib.util.find_spec("mtcnn") is None,
                                   reason="MTCNN weights need the 'mtcnn' wheel: pip install mtcnn==1.0.0")


def _astronaut_250():
    from skimage import data

    return cv2.resize(data.astronaut(), (250, 250), interpolation=cv2.INTER_AREA)


def _save(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """Two identities of astronaut crops, plus a photo without a face."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    face = _astronaut_250()
    _save(str(root / "Anne_A" / "Anne_A_0001.jpg"), face)
    _save(str(root / "Anne_A" / "Anne_A_0002.jpg"), np.ascontiguousarray(face[:, ::-1]))
    _save(str(root / "Bert_B" / "Bert_B_0001.jpg"), np.ascontiguousarray(face[10:240, 5:245]))
    _save(str(root / "Bert_B" / "Bert_B_0002.png"), cv2.resize(data.coffee(), (250, 180)))
    return root


@needs_weights
@pytest.mark.slow
def test_folder_mode_mirrors_tree_reports_and_resumes(photo_tree, tmp_path, capsys):
    out = tmp_path / "aligned"
    rec = tmp_path / "rec"
    assert main(["--input", str(photo_tree), "--output", str(out), "--to-rec", str(rec),
                 "--pairs", str(_pairs(tmp_path)), "--bin", str(tmp_path / "lfw.bin"), "--layout", "lfw"]) == 0
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.suffix in (".jpg", ".png"))
    assert crops == ["Anne_A/Anne_A_0001.jpg", "Anne_A/Anne_A_0002.jpg", "Bert_B/Bert_B_0001.jpg",
                     "Bert_B/Bert_B_0002.png"]
    assert cv2.imread(str(out / "Anne_A" / "Anne_A_0001.jpg")).shape == (112, 112, 3)
    report = (out / "align_report.tsv").read_text().splitlines()
    assert report == ["path\tproblem\taction", "Bert_B/Bert_B_0002.png\tno face detected\tcenter"]
    lst = (out / "aligned.lst").read_text().splitlines()
    assert [line.split("\t")[2] for line in lst] == ["0", "0", "1", "1"]
    from insightgluon.data.bin import load_bin
    from insightgluon.data.recordio import FaceRecordDataset

    ds = FaceRecordDataset(str(rec))
    assert len(ds) == 4 and ds.num_classes == 2 and ds[0][0].shape == (112, 112, 3)
    bins, issame = load_bin(str(tmp_path / "lfw.bin"))
    assert len(bins) == 4 and issame.tolist() == [True, False]
    # Resume: existing crops are kept (not rewritten) and the report survives.
    stamp = os.path.getmtime(out / "Anne_A" / "Anne_A_0001.jpg")
    os.remove(out / "Bert_B" / "Bert_B_0001.jpg")
    capsys.readouterr()
    assert main(["--input", str(photo_tree), "--output", str(out), "--no-face", "skip"]) == 0
    assert "detected 1, existing 3" in capsys.readouterr().out
    assert os.path.getmtime(out / "Anne_A" / "Anne_A_0001.jpg") == stamp
    assert (out / "Bert_B" / "Bert_B_0001.jpg").exists()
    assert "Bert_B/Bert_B_0002.png\tno face detected\tcenter" in (out / "align_report.tsv").read_text()


def _pairs(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("1\t2\nAnne_A\t1\t2\nAnne_A\t1\tBert_B\t1\n")
    return path


def test_landmark_file_mode_needs_no_detector(tmp_path, capsys, monkeypatch):
    import insightgluon.cli.align as cli

    monkeypatch.setattr(cli, "_detector", lambda args: pytest.fail("detector must not be loaded"))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)
    _save(str(tmp_path / "in" / "Carl_C" / "Carl_C_0001.jpg"), img)
    marks = REFERENCE_112 * 1.5 + 20  # a face 1.5x the template size
    line = "Carl_C/Carl_C_0001.jpg " + " ".join(f"{v:.3f}" for v in marks.reshape(-1))
    (tmp_path / "lfw_landmark.txt").write_text(line + "\n")
    assert main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                 "--landmarks", str(tmp_path / "lfw_landmark.txt")]) == 0
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "Carl_C" / "Carl_C_0001.jpg")), cv2.COLOR_BGR2RGB)
    expected = cv2.resize(img[20:20 + 168, 20:20 + 168], (112, 112), interpolation=cv2.INTER_LINEAR)
    assert np.abs(crop[20:90, 20:90].astype(int) - expected[20:90, 20:90]).mean() < 40  # JPEG noise only
    assert "landmarks 1" in capsys.readouterr().out


def test_landmark_formats_and_errors(tmp_path):
    vgg = tmp_path / "loose_landmark_test.csv"
    vgg.write_text('NAME_ID,P1X,P1Y,P2X,P2Y,P3X,P3Y,P4X,P4Y,P5X,P5Y\n'
                   '"n000001/0001_01",75.8,110.0,103.0,104.5,90.2,126.1,82.1,146.3,104.9,141.4\n')
    entry = read_landmark_file(str(vgg))[0]
    assert entry.path == "n000001/0001_01.jpg" and entry.identity == "n000001"
    assert entry.landmarks[1].tolist() == [103.0, 104.5]
    lst = tmp_path / "train.lst"
    lst.write_text("0\ta/1.jpg\t3\t10\t20\t110\t120\t30 60 45 35 58\t50 50 70 90 90\n1\tb/2.jpg\t4\n")
    first, second = read_landmark_file(str(lst))
    assert first.label == 3 and first.landmarks[:, 0].tolist() == [30, 60, 45, 35, 58]
    assert first.box.tolist() == [10, 20, 110, 120] and second.aligned and second.landmarks is None
    bad = tmp_path / "bad.txt"
    bad.write_text("a/1.jpg 1 2 3 4 5 6 7 8 9 10\na/2.jpg 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"bad.txt: line 2: expected 'path x1 y1"):
        read_landmark_file(str(bad))
    bad.write_text("a/1.jpg 1 2 3 4 5 6 7 8 9 x\n")
    with pytest.raises(DataFormatError, match="bad.txt: line 1: expected numbers"):
        read_landmark_file(str(bad))
    bad.write_text("../escape.jpg 1 2 3 4 5 6 7 8 9 10\n")
    with pytest.raises(DataFormatError, match="must be relative"):
        build_jobs("landmarks", str(tmp_path), str(bad))
    with pytest.raises(DataFormatError, match="missing.txt: cannot read"):
        read_landmark_file(str(tmp_path / "missing.txt"))


def test_layout_inputs_and_errors(tmp_path):
    listing = tmp_path / "list.json"
    listing.write_text('{"path": ["x/1.jpg", "y/2.jpg"]}')
    assert read_image_list(str(listing)) == ["x/1.jpg", "y/2.jpg"]
    listing.write_text('{"paths": []}')
    with pytest.raises(DataFormatError, match="list.json: JSON image list needs a 'path' array"):
        read_image_list(str(listing))
    img = tmp_path / "m" / "1.jpg"
    _save(str(img), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / "m" / "1.jpg.json").write_text('{"bounding_box": {"x": 2, "y": 3, "width": 10, "height": 12}}')
    assert read_metadata_box(str(img)).tolist() == [2, 3, 12, 15]
    (tmp_path / "m" / "1.jpg.json").write_text('{"bounding_box": {"x": 2}}')
    with pytest.raises(DataFormatError, match=r"1.jpg.json: expected a 'bounding_box'"):
        build_jobs("megaface", str(tmp_path / "m"))
    with pytest.raises(ConfigError, match="does not exist"):
        build_jobs("folder", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="--list is for"):
        build_jobs("folder", str(tmp_path), image_list=str(listing))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("10\t300\nA\t1\t2\nA\t1\tB\t4\nA\tone\t2\n")
    with pytest.raises(DataFormatError, match="pairs.txt: line 4"):
        write_pairs_bin(str(tmp_path / "x.bin"), str(pairs), str(tmp_path))
    pairs.write_bytes(b"A 1 2\n\xff\xfe\n")
    with pytest.raises(DataFormatError, match="pairs.txt: cannot read pairs file"):
        write_pairs_bin(str(tmp_path / "x.bin"), str(pairs), str(tmp_path))
    with pytest.raises(ConfigError, match="--pairs and --bin go together"):
        main(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--pairs", str(pairs)])


def test_cli_reports_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "lm.txt"
    bad.write_text("a.jpg 1 2\n")
    result = subprocess.run([sys.executable, "-m", "insightgluon", "align", "--input", str(tmp_path),
                             "--output", str(tmp_path / "o"), "--landmarks", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{bad}: line 1: expected 'path x1 y1 ... x5 y5'" in result.stderr


def test_landmark_list_dataset_yields_aligned_crops(tmp_path):
    img = np.full((200, 200, 3), 40, np.uint8)
    marks = REFERENCE_112 + 30
    for x, y in marks:
        cv2.circle(img, (int(round(x)), int(round(y))), 3, (250, 250, 250), -1)
    for name in ("p/1.png", "q/1.png", "q/2.png"):
        _save(str(tmp_path / name), img)
    coords = " ".join(f"{v:.2f}" for v in marks.reshape(-1))
    (tmp_path / "lm.txt").write_text("".join(f"{n} {coords}\n" for n in ("q/1.png", "p/1.png", "q/2.png")))
    ds = LandmarkListDataset(str(tmp_path / "lm.txt"), str(tmp_path))
    assert len(ds) == 3 and ds.num_classes == 2 and ds.labels.tolist() == [1, 0, 1]
    rgb, label = ds[1]
    assert rgb.shape == (112, 112, 3) and rgb.dtype == np.uint8 and label == 0
    for x, y in REFERENCE_112:
        assert rgb[int(round(y)), int(round(x))].min() > 200
    flipped = LandmarkListDataset(str(tmp_path / "lm.txt"), str(tmp_path), transform=lambda x, rng: x[:, ::-1])
    assert np.array_equal(flipped[1][0], rgb[:, ::-1])
    os.remove(tmp_path / "q" / "2.png")
    with pytest.raises(DataFormatError, match=r"lm.txt: entry 2 \(q/2.png\): file not found"):
        ds[2]


class _FixedDetector:
    """Stands in for MTCNN: returns the same detections for every photo."""

    def __init__(self, boxes, points):
        self.result = (np.asarray(boxes, np.float32).reshape(-1, 5), np.asarray(points, np.float32).reshape(-1, 5, 2))

    def detect_batch(self, images):
        return [self.result for _ in images]


def test_aligner_uses_dataset_box_to_choose_and_fall_back():
    from insightgluon.align.pipeline import FaceAligner, Job

    img = np.zeros((200, 200, 3), np.uint8)
    points = np.stack([REFERENCE_112 + 10, REFERENCE_112 + 80])
    boxes = [[10, 10, 122, 122, 0.99], [80, 80, 192, 192, 0.9]]
    aligner = FaceAligner(_FixedDetector(boxes, points))
    # No dataset box: the legacy rule keeps the larger/more central face (both equal size; second is closer).
    (_, method, problem), = aligner.align_batch([Job("a", "a")], [img])
    assert (method, problem) == ("detected", "")
    hinted = Job("a", "a", box=np.array([15.0, 12, 120, 125]))
    (crop, method, _), = aligner.align_batch([hinted], [img])
    assert method == "detected" and crop.shape == (112, 112, 3)
    far = Job("a", "a", box=np.array([0.0, 150, 40, 199]))
    (_, method, problem), = aligner.align_batch([far], [img])
    assert (method, problem) == ("bbox", "no detection matches the dataset box")
    nothing = FaceAligner(_FixedDetector(np.zeros((0, 5)), np.zeros((0, 5, 2))), no_face="skip")
    assert nothing.align_batch([Job("a", "a")], [img])[0] == (None, "skipped", "no face detected")
    bad = Job("a", "a", landmarks=np.ones((5, 2)))
    (_, method, problem), = FaceAligner().align_batch([bad], [img])
    assert method == "center" and problem.startswith("bad landmarks")
