"""IJB 1:1 protocol steps against independent float64 computations and hand-made cases."""
import numpy as np
import pytest

from insightgluon.errors import DataFormatError
from insightgluon.eval import ijb


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_meta_files_read_and_bad_rows_named(tmp_path):
    tid = _write(tmp_path / "ijbc_face_tid_mid.txt", ["1.jpg 1 69544", "2.jpg 1 69545", "3.jpg 7 3"])
    pts = _write(tmp_path / "ijbc_name_5pts_score.txt",
                 [f"{k}.jpg " + " ".join(str(v) for v in range(10)) + f" 0.{k}" for k in (1, 2, 3)])
    meta = ijb.read_image_meta(tid, pts)
    assert meta.names == ["1.jpg", "2.jpg", "3.jpg"] and meta.templates.tolist() == [1, 1, 7]
    assert meta.medias.tolist() == [69544, 69545, 3] and meta.landmarks.shape == (3, 5, 2)
    assert meta.landmarks[0, 1].tolist() == [2, 3] and meta.scores.tolist() == pytest.approx([0.1, 0.2, 0.3])
    bad = _write(tmp_path / "bad_tid.txt", ["1.jpg 1 69544", "2.jpg 1"])
    with pytest.raises(DataFormatError, match=r"bad_tid.txt: line 2: 2 columns, expected 3"):
        ijb.read_image_meta(bad, pts)
    swapped = _write(tmp_path / "swapped.txt", ["2.jpg 1 69545", "1.jpg 1 69544", "3.jpg 7 3"])
    with pytest.raises(DataFormatError, match=r"ijbc_name_5pts_score.txt: line 1: image 1.jpg, expected 2.jpg"):
        ijb.read_image_meta(swapped, pts)
    with pytest.raises(DataFormatError, match=r"nope.txt: no such IJB meta file"):
        ijb.read_image_meta(str(tmp_path / "nope.txt"), pts)
    pairs = _write(tmp_path / "pairs.txt", ["1 7 0", "1 1 1", "7 x 0"])
    with pytest.raises(DataFormatError, match=r"pairs.txt: line 3: not a number"):
        ijb.read_template_pairs(pairs)
    t1, t2, label = ijb.read_template_pairs(_write(tmp_path / "ok.txt", ["1 7 0", "1 1 1"]))
    assert (t1.tolist(), t2.tolist(), label.tolist()) == ([1, 1], [7, 1], [0, 1])


def _reference_templates(feats, templates, medias):
    """Step 2 as written in the protocol, one template and one media at a time, in float64."""
    feats = feats.astype(np.float64)
    ids = sorted(set(templates.tolist()))
    out = []
    for t in ids:
        in_t = templates == t
        total = sum(feats[in_t & (medias == m)].mean(axis=0) for m in sorted(set(medias[in_t].tolist())))
        out.append(total / np.linalg.norm(total))
    return np.array(ids), np.array(out)


def test_template_features_and_scores_equal_a_float64_computation():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(300, 32)).astype(np.float32)
    det = rng.uniform(0.5, 1.0, 300).astype(np.float32)
    templates = rng.integers(0, 40, 300)
    medias = templates * 10 + rng.integers(0, 4, 300)  # several media per template, several images a media
    for flip, normalise, score in ((True, False, True), (False, True, False)):
        feats = ijb.image_features(raw, det, flip=flip, normalise=normalise, detector_score=score)
        want = raw[:, :16].astype(np.float64) + (raw[:, 16:] if flip else 0)
        if normalise:
            want /= np.linalg.norm(want, axis=1, keepdims=True)
        if score:
            want *= det[:, None]
        np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
        ids, got = ijb.template_features(feats, templates, medias)
        ref_ids, ref = _reference_templates(want, templates, medias)
        assert ids.tolist() == ref_ids.tolist()
        np.testing.assert_allclose(got, ref, atol=1e-6)
        t1, t2 = rng.choice(ids, 500), rng.choice(ids, 500)
        scores = ijb.pair_scores(ids, got, t1, t2, chunk=64)
        lookup = {t: k for k, t in enumerate(ref_ids)}
        np.testing.assert_allclose(scores, [ref[lookup[a]] @ ref[lookup[b]] for a, b in zip(t1, t2)], atol=1e-6)
    with pytest.raises(DataFormatError, match=r"pairs.txt: line 3: template 999 has no images"):
        ijb.pair_scores(ids, got, np.array([ids[0], ids[1], 999]), np.array([ids[0]] * 3), source="pairs.txt")


def _reference_tar(labels, scores, target):
    """InsightFace's rule, literally: reverse sklearn's ROC, then min over (|fpr - target|, index)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, index = min(zip(abs(fpr - target), range(len(fpr))))
    return tpr[index]


def test_tar_at_far_takes_the_nearest_fpr_without_interpolation():
    # 4 genuine, 4 impostor pairs. sklearn keeps the corners (FPR, TPR): (0, 0), (0, .5), (.25, .5),
    # (.25, .75), (.5, .75), (.5, 1), (1, 1). Reversed, the first of equally near points wins: the
    # larger FPR, and at one FPR the top of its vertical step.
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.2, 0.1])
    tars = ijb.tar_at_far(labels, scores, (0.375, 0.3, 0.0, 1e-6))
    assert tars[0.375] == _reference_tar(labels, scores, 0.375) == 1.0  # 0.25 and 0.5 equally near: 0.5
    assert tars[0.3] == _reference_tar(labels, scores, 0.3) == 0.75  # nearest 0.25, the top of its step
    assert tars[1e-6] == tars[0.0] == 0.5  # FPR 0 is reached at TPR 0.5
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 2)  # many equal scores
    for far, tar in ijb.tar_at_far(labels, scores).items():
        assert tar == _reference_tar(labels, scores, far)
    assert ijb.tar_lines({1e-4: 0.96284, 1e-5: 0.95019}) == ["TAR@FAR=1e-05: 95.02", "TAR@FAR=1e-04: 96.28"]
