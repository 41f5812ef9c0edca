"""Progress reports: a bar on a terminal; off a terminal, log lines with count, rate and ETA, for every long tool."""
import logging
import os
import re

import cv2
import pytest

import insightgluon.progress as progress_module
from _datautil import make_tiny_dataset, tiny_face
from insightgluon.cli import main as cli_main
from insightgluon.progress import Progress, format_seconds, progress
from tests.test_eval_cli import export_tiny_model, write_tiny_bin


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "insightgluon.progress"]


def test_log_mode_writes_a_line_per_tenth_with_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO)
    with Progress(total=200, desc="align", unit="img", bar=False) as bar:
        for _ in range(200):
            clock.now += 0.5  # 2 img/s
            bar.update(1)
    lines = _lines(caplog)
    assert len(lines) == 10 + 1  # 10%, 20%, ... 100%, then the summary (none before 5 s had passed)
    assert lines[0] == "align: 20/200 img (10%)  2.0 img/s  elapsed 0:00:10  ETA 0:01:30"
    assert lines[-2].startswith("align: 200/200 img (100%)")
    assert lines[-1] == "align: done, 200 img in 0:01:40 (2.0 img/s)"


def test_log_mode_is_quiet_for_short_work_and_uses_time_for_slow_or_unknown_work(clock, caplog):
    caplog.set_level(logging.INFO)
    with Progress(total=10, desc="quick", bar=False) as bar:
        for _ in range(10):
            clock.now += 0.1
            bar.update(1)
    assert _lines(caplog) == []
    with Progress(desc="stream", unit="file", bar=False) as bar:  # no total: a line every 30 s
        for _ in range(100):
            clock.now += 1.0
            bar.update(1)
    lines = _lines(caplog)
    assert len(lines) == 3 + 1 and lines[0] == "stream: 30 file  1.0 file/s  elapsed 0:00:30"
    caplog.clear()
    with Progress(total=100, desc="train", unit="batch", bar=False, every_fraction=0) as bar:
        for _ in range(3):
            clock.now += 20.0  # slow: 20 s per batch
            bar.update(1)
            bar.touch() if bar.n == 1 else None  # the caller logged its own line after batch 1
    assert _lines(caplog)[0] == "train: 3/100 batch (3%)  20.0 s/batch  elapsed 0:01:00  ETA 0:32:20"


def test_terminal_mode_is_a_bar_and_logs_nothing(caplog, capsys):
    caplog.set_level(logging.INFO)
    items = list(progress(range(5), desc="bar", bar=True))
    assert items == list(range(5)) and _lines(caplog) == []
    assert "bar: 100%" in capsys.readouterr().err
    assert list(progress(iter("abc"), enabled=False)) == ["a", "b", "c"]
    assert format_seconds(3725.9) == "1:02:05"


@pytest.fixture
def logged(monkeypatch, caplog):
    """Run tools as under nohup: no terminal, a line each half of the work from the start."""
    monkeypatch.setattr(progress_module, "on_terminal", lambda stream=None: False)
    monkeypatch.setattr(progress_module, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(progress_module, "EVERY_FRACTION", 0.5)
    caplog.set_level(logging.INFO)

    def run(argv, pattern):
        caplog.clear()
        assert cli_main(argv) == 0, caplog.text
        found = [line for line in _lines(caplog) if re.match(pattern, line)]
        assert found, (pattern, _lines(caplog))
        assert any(" ETA " in line for line in found)
    return run


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    export_tiny_model(root / "m", 1, seed=3)
    write_tiny_bin(root / "lfw.bin")
    for person in ("Ann_A", "Bob_B"):
        os.makedirs(root / "faces16" / person)
        os.makedirs(root / "photos" / person)
        for k in range(3):
            face = cv2.resize(tiny_face(len(person), k), (16, 16), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / "faces16" / person / f"{person}_{k:04d}.png"), face)
            cv2.imwrite(str(root / "photos" / person / f"{person}_{k + 1:04d}.jpg"), tiny_face(len(person), k))
    (root / "pairs.txt").write_text("Ann_A 1 2\nAnn_A 1 Bob_B 1\n")
    (root / "fs.lst").write_text("".join(f"1\tfaces16/{p}/{p}_{k:04d}.png\t0\n" for p in ("Ann_A", "Bob_B")
                                         for k in range(3)))
    return root


def test_every_long_tool_logs_progress_off_a_terminal(ws, logged, monkeypatch, tmp_path):
    import insightgluon.cli.align as align_cli
    from test_align_formats import _Landmarks

    monkeypatch.setattr(align_cli, "_detector", lambda args: _Landmarks())
    r = str(ws)
    logged(["synth", "--output", str(tmp_path / "s"), "--num-ids", "4", "--imgs-per-id", "2", "--num-val-ids", "2",
            "--pairs", "2", "--workers", "1"], r"synth train: \d+/4 identity \(\d+%\)")
    logged(["align", "--input", f"{r}/photos", "--output", str(tmp_path / "a")], r"align: \d+/6 img \(\d+%\)")
    logged(["face2rec", f"{r}/photos", "--output", str(tmp_path / "rec")], r"face2rec: \d+/6 img")
    logged(["pack-bin", f"{r}/pairs.txt", "--image-root", f"{r}/photos", "--output", str(tmp_path / "p.bin")],
           r"pack-bin: \d+/2 pair")
    logged(["verify", "--model", f"{r}/m,1", "--data-dir", r, "--target", "lfw", "--image-size", "16,16"],
           r"lfw: \d+/40 img \(\d+%\)")
    model = ["--model", f"{r}/m,1", "--image-size", "16,16", "--batch-size", "4"]
    logged(["megaface", "gen", *model, "--facescrub-lst", f"{r}/fs.lst", "--output", str(tmp_path / "f")],
           r"features: \d+/6 img")
    features = str(tmp_path / "f" / "facescrub")
    logged(["megaface", "evaluate", features, features, ".bin", "-s", "6"], r"probes: \d+/6 file")
    logged(["megaface", "identify", *model, "--data", f"{r}/faces16"], r"embedding: \d+/\d+ img")


def test_training_keeps_its_speed_lines(tmp_path, logged, caplog):
    data = make_tiny_dataset(tmp_path, num_ids=2, per_id=4, size=32)
    assert cli_main(["train", "--data-dir", data, "--network", "r18", "--version-multiplier", "0.125",
                     "--emb-size", "8", "--image-size", "32,32", "--per-batch-size", "4", "--max-steps", "2",
                     "--frequent", "1", "--dry-run", "--data-workers", "0", "--tensorboard", "0"]) == 0
    speed = [r.getMessage() for r in caplog.records if "Speed:" in r.getMessage()]
    assert len(speed) == 2 and all("samples/sec" in line and "ETA: " in line for line in speed)


def test_a_late_first_line_is_not_followed_by_a_twin(clock, caplog):
    caplog.set_level(logging.INFO)
    with Progress(total=200, desc="synth", unit="identity", bar=False) as bar:
        for _ in range(200):
            clock.now += 0.052  # the quiet 5 s end at 97/200
            bar.update(1)
    counts = [int(line.split()[1].split("/")[0]) for line in _lines(caplog)[:-1]]
    assert counts == [97, 120, 140, 160, 180, 200]
