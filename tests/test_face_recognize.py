"""Every face of a frame recognised against a gallery: detection, alignment, one embedding batch, matching."""
import os

import cv2
import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from insightgluon.errors import ConfigError  # noqa: E402
from insightgluon.face.recognize import FrameRecognizer, match_faces, stage_report  # noqa: E402


def test_assignment_gives_each_identity_to_one_face():
    scores = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert match_faces(scores, 0.5, "greedy") == [0, None]  # the best pair first, then nothing is left
    assert match_faces(scores, 0.5, "assign") == [1, 0]  # both faces named: the larger total
    assert match_faces(np.array([[0.4, 0.3]]), 0.5) == [None]  # below the threshold: unknown
    assert match_faces(np.array([[0.9], [0.8], [0.7]]), 0.5) == [0, None, None]
    assert match_faces(np.zeros((0, 3)), 0.5) == []
    with pytest.raises(ConfigError, match="--match best: choose one of assign, greedy"):
        match_faces(scores, 0.5, "best")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A pixel-pooling model, a gallery of three synthetic people and a frame with them and a stranger."""
    from insightgluon.align.mtcnn import MTCNN
    from insightgluon.align.transform import align_face
    from insightgluon.data.image import decode_jpeg
    from insightgluon.data.synthetic import render_identity
    from insightgluon.export.deploy import save_checkpoint

    root = tmp_path_factory.mktemp("scene")
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Pooling(x, kernel=(8, 8), stride=(8, 8), pool_type="avg", name="pool0")
    out = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=64, name="fc1")
    rng = np.random.default_rng(0)
    save_checkpoint(str(root / "pixels"), 1, out, {"fc1_weight": mx.nd.array(rng.normal(0, 1, (64, 588))),
                                                 "fc1_bias": mx.nd.zeros(64)})
    detector = MTCNN(min_size=40)
    people = {"ada": (1, 0), "bo": (2, 0), "cy": (3, 0), "stranger": (5, 1)}  # (identity, image)
    faces = {name: decode_jpeg(render_identity(0, g, k + 1, 112)[k]) for name, (g, k) in people.items()}
    gallery = root / "gallery"
    os.makedirs(gallery)
    for name in ("ada", "bo", "cy"):
        canvas = np.full((200, 200, 3), 90, np.uint8)
        canvas[44:156, 44:156] = faces[name]
        _, marks = detector.detect(canvas)
        cv2.imwrite(str(gallery / f"{name}.png"), align_face(canvas, marks[0])[:, :, ::-1])
    frame = np.full((300, 640, 3), 70, np.uint8)
    for k, name in enumerate(people):
        frame[90:202, 20 + 155 * k:132 + 155 * k] = faces[name]
    return {"model": f"{root / 'pixels'},1", "gallery": str(gallery), "frame": frame, "detector": detector}


def test_every_face_of_a_frame_is_found_and_named(scene):
    from insightgluon.face.search import FaceCropper, FaceModel, Gallery

    model = FaceModel.load(scene["model"])
    gallery = Gallery(scene["gallery"], model, FaceCropper(model.image_size, aligned=True), cache=False)
    recognizer = FrameRecognizer(model, gallery, scene["detector"], threshold=0.9, top_k=2)
    faces = sorted(recognizer(scene["frame"]), key=lambda f: f.box[0])
    assert [f.identity for f in faces] == ["ada", "bo", "cy", None]
    assert all(f.score > 0.9 for f in faces[:3]) and faces[3].score <= 0.9
    assert [len(f.top) for f in faces] == [2] * 4 and faces[0].top[0][0] == "ada"
    for k, face in enumerate(faces):  # each box is around its pasted face
        x1, y1, x2, y2 = face.box
        assert 20 + 155 * k - 10 < (x1 + x2) / 2 - 56 < 20 + 155 * k + 10 and 80 < (y1 + y2) / 2 < 210
    record = faces[0].to_dict()
    assert set(record) == {"box", "landmarks", "det_score", "identity", "score", "top"}
    assert len(record["landmarks"]) == 5 and record["identity"] == "ada"
    assert recognizer(np.full((240, 320, 3), 70, np.uint8)) == []
    lines = stage_report(recognizer.seconds, 2)
    assert [line.split()[0] for line in lines] == ["detect", "align", "embed", "match"]


def _run(args, capsys):
    from insightgluon.cli import main

    code = main(["face", "recognize", *args])
    return code, capsys.readouterr().out


def _records(folder):
    import json

    with open(os.path.join(folder, "faces.jsonl")) as stream:
        return [json.loads(line) for line in stream]


def test_recognize_a_photo_and_a_folder(scene, tmp_path, capsys, caplog):
    base = ["--gallery", scene["gallery"], "--aligned", "--model", scene["model"], "--threshold", "0.9"]
    photo = str(tmp_path / "party.png")
    cv2.imwrite(photo, scene["frame"][:, :, ::-1])
    out = str(tmp_path / "out")
    code, text = _run([photo, *base, "--output", out], capsys)
    assert code == 0 and "frames 1, faces 4" in text and "identities seen: ada (1), bo (1), cy (1)" in text
    assert cv2.imread(os.path.join(out, "party.png")).shape == scene["frame"].shape
    records = _records(out)
    assert sorted(r["identity"] or "-" for r in records) == ["-", "ada", "bo", "cy"]
    assert all(set(r) == {"source", "frame", "time_s", "box", "landmarks", "det_score", "identity", "score",
                          "top"} and r["source"] == "party.png" and r["frame"] == 0 for r in records)
    # A folder, recursively; an unreadable file is reported and the rest goes on.
    folder = tmp_path / "photos"
    os.makedirs(folder / "day2")
    cv2.imwrite(str(folder / "a.jpg"), scene["frame"][:, :, ::-1])
    cv2.imwrite(str(folder / "day2" / "b.png"), scene["frame"][:, :, ::-1])
    (folder / "day2" / "broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "grey.pgm"), cv2.cvtColor(scene["frame"], cv2.COLOR_RGB2GRAY))
    out2 = str(tmp_path / "out2")
    code, text = _run([str(folder), *base, "--output", out2, "--match", "greedy"], capsys)
    assert code == 0 and "frames 3" in text and "unreadable files skipped: 1 (day2/broken.jpg)" in text
    assert "broken.jpg: not a readable image; going on with the rest" in caplog.text
    assert os.path.isfile(os.path.join(out2, "a.jpg")) and os.path.isfile(os.path.join(out2, "day2", "b.png"))
    assert cv2.imread(os.path.join(out2, "grey.pgm.png")).shape == scene["frame"].shape  # colour annotations
    named = [r for r in _records(out2) if r["source"] in ("a.jpg", os.path.join("day2", "b.png"))]
    assert len(named) == 8 and sum(r["identity"] is not None for r in named) == 6


def test_recognize_a_video_and_stop_it(scene, tmp_path, capsys, monkeypatch):
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 10, (640, 300))
    for _ in range(4):
        writer.write(scene["frame"][:, :, ::-1].copy())
    writer.release()
    base = ["--gallery", scene["gallery"], "--aligned", "--model", scene["model"], "--threshold", "0.9"]
    out = str(tmp_path / "out")
    code, text = _run([video, *base, "--output", out], capsys)
    assert code == 0 and "frames 4, faces 16" in text
    result = cv2.VideoCapture(os.path.join(out, "clip.mp4"))
    assert (result.get(cv2.CAP_PROP_FRAME_COUNT), result.get(cv2.CAP_PROP_FPS)) == (4, 10)
    assert (result.get(cv2.CAP_PROP_FRAME_WIDTH), result.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 300)
    records = _records(out)
    assert [r["frame"] for r in records] == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert records[-1]["time_s"] == 0.3 and records[0]["source"] == "clip.mp4"
    # Ctrl-C at the third frame: two frames of records, a playable two-frame video, exit status 130.
    real, calls = FrameRecognizer.__call__, []

    def interrupted(self, rgb):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, rgb)

    monkeypatch.setattr(FrameRecognizer, "__call__", interrupted)
    code, text = _run([video, *base, "--output", out], capsys)
    assert code == 130 and "frames 2, faces 8" in text and "(interrupted)" in text
    assert [r["frame"] for r in _records(out)] == [0] * 4 + [1] * 4
    assert cv2.VideoCapture(os.path.join(out, "clip.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 2


def test_recognize_bad_inputs_say_one_line(scene, tmp_path, capsys, caplog):
    from insightgluon.cli import main

    base = ["--gallery", scene["gallery"], "--aligned", "--model", scene["model"]]
    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, scene["frame"][:, :, ::-1])
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    os.makedirs(tmp_path / "empty")
    cases = [([photo, *base], "no calibrated threshold; pass --threshold T or --calibrate-bin PACK"),
             ([str(tmp_path / "fake.mp4"), *base, "--threshold", "0.5"], "fake.mp4: not a video OpenCV can open"),
             (["7", *base, "--threshold", "0.5"], "camera 7: does not open"),
             ([str(tmp_path / "nothing.png"), *base, "--threshold", "0.5"], "nothing.png: no such image"),
             ([photo, "--gallery", str(tmp_path / "empty"), "--model", scene["model"], "--threshold", "0.5"],
              "empty: no gallery images")]
    for args, message in cases:
        caplog.clear()
        assert main(["face", "recognize", *args]) == 2, message
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]


def test_show_without_a_display_goes_on(scene, tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, scene["frame"][:, :, ::-1])
    code, text = _run([photo, "--gallery", scene["gallery"], "--aligned", "--model", scene["model"],
                       "--threshold", "0.9", "--show"], capsys)
    assert code == 0 and "frames 1, faces 4" in text
    assert "--show: no display here (DISPLAY is not set); going on without a window" in caplog.text


def test_show_opens_a_window_on_a_virtual_display(scene, tmp_path, monkeypatch):
    import shutil
    import subprocess
    import time

    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (Debian: apt-get install xvfb)")
    display = f":{90 + os.getpid() % 100}"
    server = subprocess.Popen(["Xvfb", display, "-screen", "0", "800x600x24"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        monkeypatch.setenv("DISPLAY", display)
        from insightgluon.face.viewer import open_viewer

        viewer = open_viewer("test")
        assert viewer is not None
        assert viewer.show(np.zeros((120, 160, 3), np.uint8)) and viewer.shown == 1
        assert viewer.label.winfo_width() >= 160
        viewer._close()
        assert not viewer.show(np.zeros((120, 160, 3), np.uint8))
        viewer.close()
    finally:
        server.terminate()
        server.wait()


def test_threshold_calibrated_on_a_pack_and_an_unwritable_output(scene, tmp_path, capsys, caplog):
    from _datautil import make_tiny_bin

    from insightgluon.cli import main

    photo = str(tmp_path / "p.png")
    cv2.imwrite(photo, scene["frame"][:, :, ::-1])
    make_tiny_bin(str(tmp_path / "lfw.bin"), num_pairs=40)  # 20 different pairs: FAR down to 0.05
    code, text = _run([photo, "--gallery", scene["gallery"], "--aligned", "--model", scene["model"],
                       "--calibrate-bin", str(tmp_path / "lfw.bin"), "--far", "0.1"], capsys)
    assert code == 0 and text.startswith(f"{tmp_path / 'lfw.bin'}: threshold_cos ") and "at FAR 0.1" in text
    (tmp_path / "taken").write_text("a file, not a folder")
    caplog.clear()
    assert main(["face", "recognize", photo, "--gallery", scene["gallery"], "--aligned", "--model",
                 scene["model"], "--threshold", "0.9", "--output", str(tmp_path / "taken")]) == 2
    assert "--output" in caplog.text and "taken: exists and is not a folder" in caplog.text


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_run_keeps_every_finished_frame(scene, tmp_path, how):
    # SIGTERM stops after a whole frame (exit 143, a playable video); SIGKILL may cut the write in
    # flight at a page boundary, so only its last line may be unterminated.
    import json
    import signal
    import subprocess
    import sys
    import time

    video = str(tmp_path / "long.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 300))
    for _ in range(150):
        writer.write(scene["frame"][:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.Popen([sys.executable, "-m", "insightgluon", "face", "recognize", video, "--gallery",
                            scene["gallery"], "--aligned", "--model", scene["model"], "--threshold", "0.9",
                            "--output", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    records = out / "faces.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.poll() is None:
        if records.exists() and records.stat().st_size > 4000:
            break
        time.sleep(0.05)
    run.send_signal(getattr(signal, how))
    report = run.communicate()[0].decode()
    text = records.read_text()
    if how == "SIGTERM":
        assert run.returncode == 143 and "(interrupted)" in report
        assert text.endswith("\n")
    else:
        assert run.returncode == -signal.SIGKILL
    whole = text[:text.rfind("\n") + 1]
    frames = [json.loads(line)["frame"] for line in whole.splitlines()]
    assert frames == sorted(frames) and 0 < len(frames) < 600
    counts = np.bincount(frames)
    assert (counts[:-1] == 4).all() and 0 < counts[-1] <= 4  # four faces a frame; only the last may be cut
    if how == "SIGTERM":
        assert counts[-1] == 4
        played = cv2.VideoCapture(str(out / "long.mp4"))
        assert int(played.get(cv2.CAP_PROP_FRAME_COUNT)) == len(counts)
