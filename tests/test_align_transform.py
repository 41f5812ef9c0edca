"""Similarity transform, templates, bbox crops and face selection."""
import math

import cv2
import numpy as np
import pytest

from insightgluon.align.transform import (REFERENCE_96, REFERENCE_112, align_face, center_box,
                                          crop_bbox, estimate_similarity, reference_landmarks,
                                          select_face)
from insightgluon.errors import ConfigError


def _similarity(scale, angle_deg, tx, ty):
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_templates_match_legacy_constants():
    assert np.allclose(REFERENCE_112[:, 0] - REFERENCE_96[:, 0], 8.0)
    assert np.allclose(REFERENCE_112[:, 1], REFERENCE_96[:, 1])
    assert REFERENCE_112[0].tolist() == pytest.approx([38.2946, 51.6963])
    assert np.allclose(reference_landmarks((112, 96)), REFERENCE_96)
    assert np.allclose(reference_landmarks((224, 224)), REFERENCE_112 * 2)
    with pytest.raises(ConfigError, match="100x80"):
        reference_landmarks((100, 80))
    with pytest.raises(ValueError):
        REFERENCE_112[0, 0] = 1.0  # the shared constant is read-only


def test_template_maps_onto_itself():
    matrix = estimate_similarity(REFERENCE_112, REFERENCE_112)
    assert np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


@pytest.mark.parametrize("params", [(1.7, 23.0, 40.0, -12.0), (0.35, -150.0, 3.0, 99.0)])
def test_known_similarity_and_its_inverse(params):
    from skimage.transform import SimilarityTransform

    matrix = _similarity(*params)
    src = REFERENCE_112
    dst = _apply(matrix, src)
    assert np.allclose(estimate_similarity(src, dst), matrix, atol=1e-9)
    inverse = estimate_similarity(dst, src)
    assert np.allclose(_apply(inverse, dst), src, atol=1e-9)
    assert np.allclose(inverse[:, :2] @ matrix[:, :2], np.eye(2), atol=1e-9)
    # Independent check against scikit-image on noisy points (least squares, not exact fit).
    noisy = dst + np.random.default_rng(1).normal(0, 2.0, dst.shape)
    reference = SimilarityTransform()
    assert reference.estimate(noisy, src)
    assert np.allclose(estimate_similarity(noisy, src), reference.params[:2], atol=1e-8)


def test_mirrored_points_give_a_rotation_not_a_reflection():
    mirrored = REFERENCE_112 * np.array([-1.0, 1.0])
    matrix = estimate_similarity(mirrored, REFERENCE_112)
    assert np.linalg.det(matrix[:, :2]) > 0


@pytest.mark.parametrize("src, message", [
    (np.ones((5, 2)), "degenerate"),
    (np.full((5, 2), np.nan), "NaN"),
    (np.ones((5, 3)), "K, 2"),
])
def test_bad_points_are_rejected(src, message):
    with pytest.raises(ValueError, match=message):
        estimate_similarity(src, REFERENCE_112 if src.shape == (5, 2) else src)


def test_align_face_puts_landmarks_on_the_template():
    # Bright dots at the landmarks of a rotated, scaled "face" must land on the template.
    matrix = _similarity(2.3, 17.0, 60.0, 25.0)
    landmarks = _apply(matrix, REFERENCE_112)
    img = np.zeros((400, 400, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(img, (int(round(x)), int(round(y))), 4, (255, 255, 255), -1)
    crop = align_face(img, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    for x, y in REFERENCE_112:
        assert crop[int(round(y)), int(round(x))].min() > 200
    assert crop.mean() < 30  # only the dots are bright
    assert align_face(img, landmarks, (112, 96)).shape == (112, 96, 3)
    with pytest.raises(ValueError, match="5 landmarks"):
        align_face(img, landmarks[:4])


def test_crop_bbox_margin_and_centre_fallback():
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:150, 100:200] = 255  # the "face" box
    img[28:172, 78:222][img[28:172, 78:222] == 0] = 100  # the 22 px margin ring
    crop = crop_bbox(img, np.array([100, 50, 200, 150, 0.99]))
    assert crop.shape == (112, 112, 3)
    assert crop.min() >= 99  # nothing from outside the margin
    assert center_box(img.shape).tolist() == [18, 12, 282, 188]
    assert crop_bbox(img, None, image_size=(112, 96)).shape == (112, 96, 3)
    with pytest.raises(ValueError, match="outside"):
        crop_bbox(img, np.array([500, 500, 600, 600]))


def test_select_face_prefers_large_central_faces():
    shape = (400, 400, 3)
    boxes = np.array([[0, 0, 60, 60, 0.99], [170, 170, 230, 230, 0.9], [150, 150, 250, 250, 0.8]])
    assert select_face(boxes, shape) == 2
    # A large face far off-centre loses to a smaller central one (legacy penalty 2·offset²).
    boxes = np.array([[300, 300, 400, 400, 1.0], [180, 180, 220, 220, 1.0]])
    assert select_face(boxes, shape) == 1
    with pytest.raises(ValueError):
        select_face(np.zeros((0, 5)), shape)


def test_centre_crop_of_a_112x112_face_is_its_112x96_alignment():
    """SphereNet reads 112x112 data as its centre 96 columns: the 112x96 template is the 112x112
    one shifted by 8 pixels, so the crop is the 112x96 alignment itself."""
    from insightgluon.data.image import resize_to

    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8), (9, 9), 3)
    landmarks = _apply(_similarity(1.7, -9.0, 40.0, 30.0), REFERENCE_112)
    wide = align_face(img, landmarks, (112, 112))
    narrow = align_face(img, landmarks, (112, 96))
    cropped = resize_to(wide, (112, 96))
    assert cropped.shape == (112, 96, 3)
    diff = np.abs(cropped.astype(int) - narrow.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05  # warpAffine's fixed-point rounding only
    assert resize_to(wide, (112, 112)) is wide
    assert resize_to(wide, (56, 56)).shape == (56, 56, 3)  # other sizes are resized
