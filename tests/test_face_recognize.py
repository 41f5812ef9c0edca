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
