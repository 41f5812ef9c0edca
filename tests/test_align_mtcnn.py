"""The Gluon MTCNN with the pretrained weights of the ``mtcnn`` wheel, on real photos."""
import importlib.util

import cv2
import numpy as np
import pytest

from insightgluon.align import mtcnn_nets
from insightgluon.align.transform import REFERENCE_112, align_face
from insightgluon.errors import CheckpointError, ConfigError

HAVE_WEIGHTS = importlib.util.find_spec("mtcnn") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="MTCNN weights need the 'mtcnn' wheel: pip install mtcnn==1.0.0 joblib lz4")


@pytest.fixture(scope="module")
def detector():
    from insightgluon.align.mtcnn import MTCNN

    return MTCNN()


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


@needs_weights
def test_weights_load_with_expected_shapes():
    pnet = [a.shape for a in mtcnn_nets.load_weight_arrays("pnet")]
    assert pnet[0] == (3, 3, 3, 10) and pnet[2] == (1, 1, 10) and pnet[-4:] == [(1, 1, 32, 4), (4,),
                                                                               (1, 1, 32, 2), (2,)]
    rnet = [a.shape for a in mtcnn_nets.load_weight_arrays("rnet")]
    assert (576, 128) in rnet and rnet[-2:] == [(128, 2), (2,)]
    onet = [a.shape for a in mtcnn_nets.load_weight_arrays("onet")]
    assert (1152, 256) in onet and (256, 10) in onet
    pnet_net, rnet_net, onet_net = mtcnn_nets.load_networks()
    import mxnet as mx

    prob, reg = pnet_net(mx.nd.zeros((1, 3, 12, 12)))
    assert prob.shape == (1, 2, 1, 1) and reg.shape == (1, 4, 1, 1)
    assert np.allclose(prob.sum(axis=1).asnumpy(), 1.0, atol=1e-5)
    assert [o.shape for o in rnet_net(mx.nd.zeros((2, 3, 24, 24)))] == [(2, 2), (2, 4)]
    assert [o.shape for o in onet_net(mx.nd.zeros((3, 3, 48, 48)))] == [(3, 2), (3, 4), (3, 10)]
    assert np.allclose(onet_net.conv1.weight.data().asnumpy(),
                       mtcnn_nets.load_weight_arrays("onet")[0].transpose(3, 2, 0, 1))


def test_missing_wheel_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(mtcnn_nets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match="pip install mtcnn==1.0.0"):
        mtcnn_nets.weights_dir()


def test_corrupt_or_wrong_weight_files(tmp_path):
    (tmp_path / "pnet.lz4").write_bytes(b"not a joblib file")
    with pytest.raises(CheckpointError, match="pnet.lz4: not a readable"):
        mtcnn_nets.load_weight_arrays("pnet", str(tmp_path))
    with pytest.raises(CheckpointError, match="rnet.lz4: MTCNN weight file is missing"):
        mtcnn_nets.load_weight_arrays("rnet", str(tmp_path))
    net = mtcnn_nets.PNet()
    net.initialize()
    with pytest.raises(CheckpointError, match="expects shape"):
        net.load_keras([np.zeros((3, 3, 3, 11), np.float32)] + [np.zeros(1)] * 12)


@needs_weights
def test_astronaut_has_one_face_with_anatomical_landmarks(detector, astronaut):
    boxes, points = detector.detect(astronaut)
    assert boxes.shape == (1, 5) and points.shape == (1, 5, 2)
    x1, y1, x2, y2, score = boxes[0]
    assert score > 0.99 and 60 < x2 - x1 < 140 and 60 < y2 - y1 < 160
    lm = points[0]
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()
    left_eye, right_eye, nose, left_mouth, right_mouth = lm
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert left_eye[0] < nose[0] < right_eye[0]


@needs_weights
def test_aligned_crop_has_eyes_on_the_template(detector, astronaut):
    _, points = detector.detect(astronaut)
    crop = align_face(astronaut, points[0])
    # Re-detect on the crop (padded so the face is not cut by the border).
    pad = 56
    padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    boxes, again = detector.detect(padded)
    assert len(boxes) == 1
    error = np.linalg.norm(again[0] - pad - REFERENCE_112, axis=1)
    assert error[:2].max() < 4.0, error  # eyes
    assert error.max() < 8.0, error


@needs_weights
def test_no_face_in_coffee_and_batch_equals_single(detector, astronaut):
    from skimage import data

    coffee = data.coffee()
    boxes, points = detector.detect(coffee)
    assert boxes.shape == (0, 5) and points.shape == (0, 5, 2)
    small = cv2.resize(astronaut, (250, 250), interpolation=cv2.INTER_AREA)
    batch = detector.detect_batch([small, coffee, small, np.zeros((10, 10, 3), np.uint8)])
    single = detector.detect(small)
    assert len(batch[1][0]) == 0 and len(batch[3][0]) == 0
    for got in (batch[0], batch[2]):
        assert np.allclose(got[0], single[0], atol=1e-3) and np.allclose(got[1], single[1], atol=1e-3)


@needs_weights
def test_bad_input_and_settings(detector):
    from insightgluon.align.mtcnn import MTCNN

    with pytest.raises(ValueError, match="image 0: expected uint8"):
        detector.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ConfigError, match="factor"):
        MTCNN(factor=1.2)
    with pytest.raises(ConfigError, match="min_size"):
        MTCNN(min_size=5)
    with pytest.raises(ConfigError, match="unknown MTCNN preset 'x'"):
        MTCNN.from_preset("x")
    mega = MTCNN.from_preset("megaface")
    assert mega.min_size == 100 and mega.thresholds == (0.6, 0.7, 0.7) and mega.factor == 0.709
    assert detector.scales(250, 250)[0] == pytest.approx(0.6)
    assert min(detector.scales(250, 250)) * 250 >= 12


@needs_weights
def test_openvino_runs_the_same_networks(detector, astronaut):
    pytest.importorskip("openvino")
    from insightgluon.align.mtcnn import MTCNN, detector_engine

    ov = MTCNN(engine="openvino")
    assert (ov.engine, detector.engine, detector_engine("auto")) == ("openvino", "mxnet", "openvino")
    rng = np.random.default_rng(0)
    for stage, shape in ((0, (2, 37, 53, 3)), (0, (1, 12, 12, 3)), (1, (5, 24, 24, 3)), (2, (3, 48, 48, 3))):
        batch = rng.uniform(-1, 1, shape).astype(np.float32)
        want, got = detector._forward(stage, batch), ov._forward(stage, batch)
        assert [g.shape for g in got] == [w.shape for w in want]
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, atol=1e-5)
    (boxes, marks), (ov_boxes, ov_marks) = detector.detect(astronaut), ov.detect(astronaut)
    assert len(boxes) == len(ov_boxes) >= 1
    np.testing.assert_allclose(ov_boxes, boxes, atol=1e-3)
    np.testing.assert_allclose(ov_marks, marks, atol=1e-3)


def test_openvino_detector_is_refused_off_the_cpu(monkeypatch):
    import mxnet as mx

    from insightgluon.align.mtcnn import MTCNN

    with pytest.raises(ConfigError, match="MTCNN engine openvino runs on the CPU, not gpu"):
        MTCNN(ctx=mx.gpu(0), engine="openvino")
    with pytest.raises(ConfigError, match="MTCNN engine 'tensorrt': choose one of auto, mxnet, openvino"):
        MTCNN(engine="tensorrt")
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)
    from insightgluon.align.mtcnn import detector_engine

    assert detector_engine("auto") == "mxnet"
