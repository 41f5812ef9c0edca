"""Verification metrics: the legacy k-fold protocol, ROC/AUC/EER/TAR and batched embedding."""
import numpy as np
import pytest

from insightgluon.errors import DataFormatError
from insightgluon.eval import verification as V
from insightgluon.eval.embed import Embedder, embed_images, l2_normalize


def _pairs_from_distances(dist):
    """Unit embeddings whose pair squared-L2 distances equal ``dist`` (2-D rotation)."""
    angle = np.arccos(1.0 - np.asarray(dist) / 2.0)
    emb = np.zeros((2 * len(dist), 2))
    emb[0::2, 0] = 1.0
    emb[1::2, 0], emb[1::2, 1] = np.cos(angle), np.sin(angle)
    return emb


def _legacy_kfold(dist, issame, nfolds):
    """Independent reference: sklearn KFold + float accuracies per threshold, first argmax."""
    from sklearn.model_selection import KFold

    thresholds = np.arange(0, 4, 0.01)
    accs, thrs = [], []

    def acc(t, idx):
        pred = dist[idx] < t
        tp = np.sum(pred & issame[idx])
        tn = np.sum(~pred & ~issame[idx])
        return float(tp + tn) / len(idx)

    for train, test in KFold(n_splits=nfolds, shuffle=False).split(np.arange(len(dist))):
        train_acc = np.array([acc(t, train) for t in thresholds])
        best = int(np.argmax(train_acc))
        accs.append(acc(thresholds[best], test))
        thrs.append(thresholds[best])
    return np.array(accs), np.array(thrs)


@pytest.mark.parametrize("num,nfolds", [(10, 10), (17, 10), (6000, 10), (23, 4)])
def test_contiguous_folds_match_sklearn_kfold(num, nfolds):
    from sklearn.model_selection import KFold

    ours = V.contiguous_folds(num, nfolds)
    theirs = [test for _, test in KFold(n_splits=nfolds, shuffle=False).split(np.arange(num))]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_contiguous_folds_rejects_bad_counts():
    with pytest.raises(ValueError, match="between 2 and the number of pairs"):
        V.contiguous_folds(5, 10)
    with pytest.raises(ValueError, match="between 2"):
        V.contiguous_folds(5, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kfold_accuracy_matches_independent_implementation(seed):
    rng = np.random.default_rng(seed)
    issame = rng.random(613) < 0.5
    # overlapping classes, values on and off the threshold grid (ties at grid points)
    dist = np.where(issame, rng.normal(1.2, 0.35, 613), rng.normal(1.7, 0.35, 613)).clip(0, 4)
    dist[::7] = np.round(dist[::7], 2)
    acc, thr, pred = V.kfold_accuracy(dist, issame, 10)
    ref_acc, ref_thr = _legacy_kfold(dist, issame, 10)
    np.testing.assert_allclose(acc, ref_acc)
    np.testing.assert_allclose(thr, ref_thr)
    assert 0.6 < acc.mean() < 0.95
    # out-of-fold predictions reproduce the fold accuracies
    for test, a in zip(V.contiguous_folds(613, 10), acc):
        assert np.isclose(np.mean(pred[test] == issame[test]), a)


def test_perfect_embeddings_give_accuracy_and_auc_one():
    rng = np.random.default_rng(0)
    issame = np.arange(400) % 3 == 0
    dist = np.where(issame, rng.uniform(0.0, 0.8, 400), rng.uniform(2.0, 3.9, 400))
    res = V.evaluate(_pairs_from_distances(dist), issame)
    assert res.accuracy == 1.0 and res.std == 0.0
    assert res.auc == 1.0 and res.eer == 0.0
    assert res.same_accuracy == 1.0 and res.diff_accuracy == 1.0
    assert 0.79 < res.threshold <= 0.81 and np.isclose(res.threshold_cos, 1 - res.threshold / 2)
    assert res.tar_at_far[0.1] == 1.0 and res.tar_at_far[0.01] == 1.0
    assert res.tar_at_far[0.001] is None  # 266 different pairs cannot resolve 1e-3
    assert (res.num_pairs, res.num_same) == (400, int(issame.sum()))


def test_random_embeddings_give_chance_accuracy():
    rng = np.random.default_rng(1)
    emb = l2_normalize(rng.normal(size=(4000, 64)))
    issame = rng.random(2000) < 0.5
    res = V.evaluate(emb, issame)
    assert 0.45 < res.accuracy < 0.56
    assert 0.45 < res.auc < 0.55
    assert 0.44 < res.eer < 0.56


def test_known_roc_points_auc_eer_and_tar():
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    issame = np.array([True, True, False, True, False, False])
    fpr, tpr, thr = V.roc_curve(dist, issame)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(thr[1:], dist)
    res = V.evaluate(_pairs_from_distances(dist), issame, nfolds=2)
    assert np.isclose(res.auc, 8 / 9)  # one (same, diff) pair of 9 is mis-ordered
    from sklearn.metrics import roc_auc_score

    assert np.isclose(res.auc, roc_auc_score(issame, -dist))
    # gap = fpr - fnr: -1/3 at (0, 2/3), 0 at (1/3, 2/3)... crosses at fpr = 1/3
    assert np.isclose(res.eer, 1 / 3)
    assert V.tar_at_far(dist, issame, 1 / 3) == 1.0  # one false accept (0.3) allowed
    assert V.tar_at_far(dist, issame, 0.2) is None
    # threshold = 2nd smallest different distance (0.6): accepts 0.1, rejects 0.65
    two = np.array([0.1, 0.65, 0.2, 0.6, 0.7]), np.array([True, True, False, False, False])
    assert V.tar_at_far(*two, 1 / 3) == 0.5 and V.tar_at_far(*two, 0.34) == 0.5
    assert V.tar_at_far(dist, issame, 0.99) == 1.0


def test_equal_error_rate_interpolates():
    # linear crossing between (0.0, tpr .6) and (0.4, tpr 1.0): fnr .4 -> 0
    assert np.isclose(V.equal_error_rate(np.array([0.0, 0.4, 1.0]), np.array([0.6, 1.0, 1.0])), 0.2)


def test_worst_pairs_are_out_of_fold_errors_sorted():
    issame = np.arange(20) % 2 == 0
    dist = np.where(issame, 0.2, 3.3) + np.linspace(0, 0.002, 20)
    dist[[3, 14]] = [0.3, 0.1]       # different pairs that look the same
    issame[[3, 14]] = False
    dist[[5, 17]] = [3.8, 2.9]       # same pairs that look different
    issame[[5, 17]] = True
    res = V.evaluate(_pairs_from_distances(dist), issame, nfolds=2)
    fa, fr = res.worst_pairs(4)
    assert list(fa) == [14, 3] and list(fr) == [5, 17]
    assert np.isclose(res.accuracy, 0.8) and np.isclose(res.same_accuracy, 9 / 11)
    text = "\n".join(res.legacy_lines("[x]") + res.extra_lines("[x]"))
    assert "[x]Accuracy-Flip: 0.80000+-0.00000" in text and "TAR@FAR: 1e-01=" in text
    d = res.to_dict()
    assert d["tar_at_far"]["0.001"] is None and d["xnorm"] is None and "distances" not in d


def test_evaluate_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="do not match 3 pairs"):
        V.evaluate(np.zeros((5, 4)), [True, False, True])


def test_verification_set_validates_shapes():
    with pytest.raises(DataFormatError, match="^lfw: 3 images for 2 pairs"):
        V.VerificationSet("lfw", np.zeros((3, 8, 8, 3), np.uint8), [True, False])
    with pytest.raises(DataFormatError, match="^lfw: images must be"):
        V.VerificationSet("lfw", np.zeros((4, 8, 8), np.uint8), [True, False])


class _Proj:
    """Fixed linear map of the flattened image: a model with a known answer."""

    def __init__(self, weight):
        self.weight = weight
        self.calls = []

    def __call__(self, x):
        import mxnet as mx

        self.calls.append(x.shape[0])
        flat = x.asnumpy().reshape(x.shape[0], -1)
        return mx.nd.array(flat @ self.weight)


@pytest.mark.parametrize("batch_size", [4, 7, 50])
def test_embed_images_flip_sum_windows_and_xnorm(batch_size):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(17, 5, 6, 3), dtype=np.uint8)
    model = _Proj(rng.normal(size=(90, 8)).astype(np.float32))
    emb, xnorm = embed_images(model, images, batch_size=batch_size)
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    raw, raw_flip = x.reshape(17, -1) @ model.weight, x[..., ::-1].reshape(17, -1) @ model.weight
    np.testing.assert_allclose(emb, l2_normalize(raw + raw_flip), rtol=1e-4, atol=1e-5)
    norms = np.r_[np.linalg.norm(raw, axis=1), np.linalg.norm(raw_flip, axis=1)]
    assert np.isclose(xnorm, norms.mean(), rtol=1e-4)
    # constant batch shape (originals + flips) on every forward
    assert set(model.calls) == {2 * min(batch_size, 17)}
    plain = Embedder(model, batch_size=batch_size, flip=False).embed(images)[0]
    np.testing.assert_allclose(plain, l2_normalize(raw), rtol=1e-4, atol=1e-5)


def test_embed_images_rejects_bad_input():
    with pytest.raises(ValueError, match="expected images"):
        embed_images(_Proj(np.zeros((4, 2), np.float32)), np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(None, batch_size=0)


def test_verify_model_perfect_on_identical_same_pairs():
    rng = np.random.default_rng(4)
    issame = np.arange(60) % 2 == 0
    images = rng.integers(0, 256, size=(120, 4, 4, 3), dtype=np.uint8)
    images[1::2][issame] = images[0::2][issame]
    vset = V.VerificationSet("toy", images, issame)
    res = V.verify_model(_Proj(rng.normal(size=(48, 16)).astype(np.float32)), vset, batch_size=16)
    assert res.name == "toy" and res.accuracy == 1.0 and res.auc == 1.0
    assert res.accuracy_noflip == 1.0 and res.xnorm > 0
