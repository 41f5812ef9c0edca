"""FaceAugment (legacy mirror / colour / cutoff semantics) and IdentityBalancedSampler."""
import numpy as np
import pytest

from insightgluon.data.samplers import IdentityBalancedSampler
from insightgluon.data.transforms import FaceAugment, _brightness, _contrast, _saturation
from insightgluon.errors import ConfigError


def _img(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 12, 3), dtype=np.uint8)


def test_mirror_happens_about_half_the_time():
    img, aug, rng = _img(), FaceAugment(rand_mirror=True), np.random.default_rng(0)
    flips = 0
    for _ in range(200):
        out = aug(img, rng)
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        flips += np.array_equal(out, img[:, ::-1])
        assert np.array_equal(out, img) or np.array_equal(out, img[:, ::-1])
    assert 70 < flips < 130
    assert not FaceAugment(rand_mirror=False).active


class _Fixed:
    """A generator stand-in whose uniform() returns a fixed value, to check the formulas."""

    def __init__(self, u):
        self.u = u

    def uniform(self, lo, hi):
        return self.u


def test_jitter_formulas_match_mxnet_color_jitter():
    img = _img(1).astype(np.float32)
    luma = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    a = 1.1
    np.testing.assert_allclose(_brightness(img, _Fixed(0.1)), img * a, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(_contrast(img, _Fixed(0.1)), img * a + (1 - a) * luma.mean(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(_saturation(img, _Fixed(0.1)), img * a + (1 - a) * luma[..., None], rtol=1e-5, atol=1e-3)


def test_color_jitter_stays_within_range_and_keeps_mean_roughly():
    img, rng = _img(2), np.random.default_rng(0)
    aug = FaceAugment(rand_mirror=False, color=1)
    outs = np.stack([aug(img, rng) for _ in range(50)]).astype(float)
    assert not all(np.array_equal(o, img) for o in outs)
    assert abs(outs.mean() - img.mean()) < 5 and np.abs(outs - img).max() < 0.2 * 255 + 64


def test_color_2_recompresses_half_the_time():
    img = np.full((32, 32, 3), 90, np.uint8)
    img[8:24, 8:24] = (200, 30, 60)
    aug, rng = FaceAugment(rand_mirror=False, color=2), np.random.default_rng(0)
    # JPEG at quality 2..20 smears the sharp edge of the square; colour jitter alone keeps it a step
    ramps = [np.abs(np.diff(aug(img, rng).astype(int)[16, 4:12, 0])).max() < 60 for _ in range(100)]
    assert 0.3 < np.mean(ramps) < 0.7
    plain = FaceAugment(rand_mirror=False, color=1)
    assert not any(np.abs(np.diff(plain(img, rng).astype(int)[16, 4:12, 0])).max() < 60 for _ in range(20))


def test_cutoff_sets_a_grey_square_half_the_time():
    img = np.zeros((40, 40, 3), np.uint8)
    aug, rng = FaceAugment(rand_mirror=False, cutoff=10), np.random.default_rng(0)
    hits = 0
    for _ in range(200):
        out = aug(img, rng)
        grey = out[..., 0] == 128
        if grey.any():
            hits += 1
            ys, xs = np.nonzero(grey)
            assert ys.ptp() < 10 and xs.ptp() < 10 and np.all(out[grey] == 128)
    assert 70 < hits < 130 and not img.any()  # input untouched
    with pytest.raises(ValueError):
        FaceAugment(cutoff=-1)


def test_identity_balanced_sampler():
    labels = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    sampler = IdentityBalancedSampler(labels, images_per_identity=4, batch_size=12, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == (labels.size // 12) * 12
    for b in range(0, len(first), 12):
        batch = labels[first[b:b + 12]]
        ids, counts = np.unique(batch, return_counts=True)
        assert ids.size == 3 and set(counts) == {4}
    single = [p for p in first if labels[p] == 0]  # a 1-image identity is drawn with replacement
    assert single and set(single) == {0}
    assert list(sampler) != first  # a new epoch is a new permutation
    assert list(IdentityBalancedSampler(labels, 4, 12, seed=3)) == first  # deterministic


@pytest.mark.parametrize("k,batch,match", [(4, 10, "multiple"), (2, 24, "needs 12 identities but the data has 10")])
def test_sampler_rejects_bad_shapes(k, batch, match):
    with pytest.raises(ConfigError, match=match):
        IdentityBalancedSampler(np.repeat(np.arange(10), 3), k, batch)
