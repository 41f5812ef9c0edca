"""MegaFace toolkit: devkit feature files, noise removal, streaming CMC / TAR@FAR, 1:N search."""
import os
import struct

import cv2
import numpy as np
import pytest

from insightgluon.errors import ConfigError, DataFormatError
from insightgluon.eval import megaface as M
from insightgluon.eval.embed import Embedder, l2_normalize
from insightgluon.eval.identification import (identify_1n, megaface_identification,
                                              same_identity_pairs)


def test_feature_file_is_the_devkit_matrix_byte_for_byte(tmp_path):
    vec = np.random.default_rng(0).normal(size=512).astype(np.float32)
    path = str(tmp_path / "a.bin")
    M.write_feature(path, vec)
    expected = struct.pack("4i", 512, 1, 4, 5) + struct.pack("%df" % 512, *vec.tolist())
    assert open(path, "rb").read() == expected
    back = M.read_feature(path)
    assert back.dtype == np.float32 and np.array_equal(back, vec)
    assert not os.path.exists(path + ".tmp")


@pytest.mark.parametrize("blob,message", [
    (b"\x01\x02", "2 bytes, shorter than the 16-byte matrix header"),
    (struct.pack("4i", 4, 1, 8, 6) + b"\0" * 32, r"header \(4, 1, 8, 6\) is not a float32"),
    (struct.pack("4i", 4, 1, 4, 5) + b"\0" * 12, "12 data bytes for 4 float32 values"),
])
def test_read_feature_rejects_bad_files(tmp_path, blob, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(blob)
    with pytest.raises(DataFormatError, match=f"^{path}: {message}"):
        M.read_feature(str(path))
    with pytest.raises(DataFormatError, match="no such feature file"):
        M.read_feature(str(tmp_path / "missing.bin"))


def test_lists_and_feature_names(tmp_path):
    lst = tmp_path / "fs.lst"
    lst.write_text("1\t/data/fs/Aaron_Eckhart/Aaron_Eckhart_1.png\t0\n\n/data/x/B/B_2.jpg\n")
    assert M.read_image_list(str(lst)) == ["/data/fs/Aaron_Eckhart/Aaron_Eckhart_1.png", "/data/x/B/B_2.jpg"]
    assert M.feature_path("out", "/data/fs/Aaron_Eckhart/Aaron_Eckhart_1.png", "r100_112x112", 2) == \
        os.path.join("out", "Aaron_Eckhart", "Aaron_Eckhart_1.png_r100_112x112.bin")
    assert M.feature_path("o", "m/375/37531198@N00/4174611825_0.jpg", "a", 3) == \
        os.path.join("o", "375", "37531198@N00", "4174611825_0.jpg_a.bin")
    with pytest.raises(DataFormatError, match="needs 2 parent folder"):
        M.feature_path("o", "x.jpg", "a", 3)
    noise = tmp_path / "n.txt"
    noise.write_text("#rules\nA_1.png\n3\t375/a@N00/1_0.jpg\n")
    assert M.read_noise_list(str(noise)) == {"A_1.png", "375/a@N00/1_0.jpg"}
    with pytest.raises(DataFormatError, match="no such image list"):
        M.read_image_list(str(tmp_path / "none.lst"))


def test_remove_noises_on_a_small_fake_list(tmp_path):
    rng = np.random.default_rng(1)
    fs_imgs = [f"fs/{p}/{p}_{i}.png" for p in ("A", "B") for i in range(3)]
    mf_imgs = [f"mf/1/u{i}@N00/{i}_0.jpg" for i in range(4)]
    feats = {}
    for img in fs_imgs:
        feats[img] = l2_normalize(rng.normal(size=(1, 8)))[0]
        path = M.feature_path(str(tmp_path / "fs_in"), img, "alg_112x112", 2)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        M.write_feature(path, feats[img])
    for img in mf_imgs:
        feats[img] = l2_normalize(rng.normal(size=(1, 8)))[0]
        path = M.feature_path(str(tmp_path / "mf_in"), img, "alg_112x112", 3)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        M.write_feature(path, feats[img])
    d = {k: str(tmp_path / k) for k in ("fs_in", "fs_out", "mf_in", "mf_out")}
    counts = M.remove_noises(fs_imgs, mf_imgs, {"A_1.png"}, {"1/u2@N00/2_0.jpg"}, d["fs_in"], d["fs_out"],
                             d["mf_in"], d["mf_out"], "alg_112x112", "alg")
    assert counts == {"facescrub": 6, "facescrub_noisy": 1, "megaface": 4, "megaface_noisy": 1}
    out = {img: M.read_feature(M.feature_path(d["fs_out"], img, "alg", 2)) for img in fs_imgs}
    for img in fs_imgs:
        assert out[img].shape == (9,)
        if img != "fs/A/A_1.png":
            assert np.array_equal(out[img], np.append(feats[img], 0.0).astype(np.float32))
    centre = np.append(feats["fs/A/A_0.png"] + feats["fs/A/A_2.png"], 0.0)
    noisy = out["fs/A/A_1.png"]
    assert np.isclose(np.linalg.norm(noisy), 1.0, atol=1e-6) and noisy[-1] == 0.0
    assert np.allclose(noisy, centre / np.linalg.norm(centre), atol=2e-3)
    assert not np.allclose(noisy, centre / np.linalg.norm(centre), atol=1e-7)  # the U(-.001,.001) jitter
    for img in mf_imgs:
        got = M.read_feature(M.feature_path(d["mf_out"], img, "alg", 3))
        assert np.array_equal(got[:8], feats[img]) and got[8] == (100.0 if "u2@" in img else 0.0)
    with pytest.raises(DataFormatError, match="every image of 'B' is on the noise list"):
        M.remove_noises(fs_imgs[3:], [], {"B_0.png", "B_1.png", "B_2.png"}, set(), d["fs_in"], d["fs_out"],
                        d["mf_in"], d["mf_out"], "alg_112x112", "alg")


class _Proj:
    def __init__(self, weight):
        self.weight = weight

    def __call__(self, x):
        import mxnet as mx

        return mx.nd.array(x.asnumpy().reshape(x.shape[0], -1) @ self.weight)


def test_generate_features_concatenates_models_and_skips_bad_images(tmp_path):
    rng = np.random.default_rng(2)
    imgs = rng.integers(0, 256, size=(5, 4, 4, 3), dtype=np.uint8)
    jobs = []
    for i, img in enumerate(imgs):
        path = str(tmp_path / f"p/{i}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img[:, :, ::-1])
        jobs.append((path, M.feature_path(str(tmp_path / "out"), path, "alg_4x4", 2)))
    cv2.imwrite(str(tmp_path / "p/big.png"), np.zeros((6, 6, 3), np.uint8))
    jobs.append((str(tmp_path / "p/big.png"), str(tmp_path / "out/p/big.png_alg_4x4.bin")))
    jobs.append((str(tmp_path / "p/missing.png"), str(tmp_path / "out/p/missing.png_alg_4x4.bin")))
    w1, w2 = rng.normal(size=(48, 6)).astype(np.float32), rng.normal(size=(48, 3)).astype(np.float32)
    embedders = [Embedder(_Proj(w1), batch_size=2), Embedder(_Proj(w2), batch_size=3)]
    assert M.generate_features(embedders, jobs, (4, 4), chunk=3) == (5, 2)
    x = imgs.transpose(0, 3, 1, 2).astype(np.float32)
    flat, flip = x.reshape(5, -1), x[..., ::-1].reshape(5, -1)
    expect = l2_normalize(np.concatenate([l2_normalize(flat @ w + flip @ w) for w in (w1, w2)], axis=1))
    got = M.load_features([out for _, out in jobs[:5]])
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-5)
    assert not os.path.exists(jobs[5][1])


def _brute_force(probes, labels, distractors, size, max_rank, far):
    """Independent reference: full score matrices and explicit loops."""
    d = distractors[:size].astype(np.float64)
    p = probes.astype(np.float64)
    dist_pd = ((p[:, None, :] - d[None, :, :]) ** 2).sum(-1)
    ranks, genuine = [], []
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j and labels[i] == labels[j]:
                true = ((p[i] - p[j]) ** 2).sum()
                ranks.append(1 + np.sum(dist_pd[j] < true))
                if i < j:
                    genuine.append(true)
    ranks = np.array(ranks)
    cmc = [np.mean(ranks <= k) for k in range(1, max_rank + 1)]
    imp = np.sort(dist_pd.ravel())
    allowed = int(np.floor(far * imp.size + 1e-9))
    tar = None if allowed < 1 else float(np.mean(np.array(genuine) < imp[allowed]))
    return np.array(cmc), tar


def _synthetic(num_ids=12, per_id=4, num_d=3000, dim=16, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    labels = np.repeat(np.arange(num_ids), per_id)
    probes = l2_normalize(centres[labels] + spread * rng.normal(size=(len(labels), dim)))
    return probes, labels, l2_normalize(rng.normal(size=(num_d, dim)))


def test_megaface_identification_matches_brute_force_for_every_size():
    probes, labels, dis = _synthetic()
    res = megaface_identification(probes, labels, dis, sizes=[10, 100, 3000], max_rank=5, far=1e-3,
                                  chunk_size=64, progress=False)
    assert res.sizes == [10, 100, 3000] and res.num_pairs == 12 * 4 * 3
    for size in res.sizes:
        cmc, tar = _brute_force(probes, labels, dis, size, 5, 1e-3)
        np.testing.assert_allclose(res.cmc[size], cmc, atol=1e-12)
        assert (res.tar[size] is None) == (tar is None)
        if tar is not None:
            assert np.isclose(res.tar[size], tar)
    assert res.tar[10] is None and res.rank(1, 10) >= res.rank(1, 3000)
    assert 0.05 < res.rank(1) < 0.99  # a non-trivial case


def test_megaface_identification_known_answer():
    # identity 0: two identical images; identity 1: two images at distance^2 0.5
    probes = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0.75, np.sqrt(1 - 0.5625)]], np.float32)
    labels = [0, 0, 1, 1]
    # one distractor sits between identity 1's images: closer to image 3 than image 2 is
    dis = np.array([[0, 0.8, 0.6], [-1, 0, 0], [0, -1, 0], [0, 0, -1]], np.float32)
    res = megaface_identification(probes, labels, dis, sizes=[4], max_rank=3, far=0.25, progress=False)
    # pairs: (0->1), (1->0) rank 1; (2->3): distractor 0 beats image 2 for probe 3 -> rank 2;
    # (3->2): for probe 2 distractor 0 is at 0.4 < 0.5 -> rank 2
    np.testing.assert_allclose(res.cmc[4], [0.5, 1.0, 1.0])
    # 16 impostor scores, 4 allowed false accepts; genuine d^2 are 0 and 0.5
    assert res.tar[4] == 1.0


def test_megaface_float16_distractors_stay_within_the_stated_bound():
    probes, labels, dis = _synthetic(num_d=2000, seed=3)
    full = megaface_identification(probes, labels, dis, max_rank=10, far=1e-3, progress=False)
    half = megaface_identification(probes, labels, dis.astype(np.float16), max_rank=10, far=1e-3,
                                   progress=False)
    assert full.sizes == [10, 100, 1000] and np.abs(full.cmc[1000] - half.cmc[1000]).max() <= 0.03
    from insightgluon.eval.identification import _neg_sq_dist

    exact = _neg_sq_dist(probes, (probes ** 2).sum(1), dis)
    approx = _neg_sq_dist(probes, (probes ** 2).sum(1), dis.astype(np.float16))
    assert np.abs(exact - approx).max() <= 4 * 2.0 ** -11


def test_megaface_identification_rejects_bad_input():
    probes, labels, dis = _synthetic(num_d=50)
    with pytest.raises(ConfigError, match="between 1 and the 50 distractors"):
        megaface_identification(probes, labels, dis, sizes=[100], progress=False)
    with pytest.raises(ConfigError, match="differ in width"):
        megaface_identification(probes, labels, dis[:, :3], progress=False)
    with pytest.raises(ConfigError, match="no identity has two probe images"):
        megaface_identification(probes[:3], [0, 1, 2], dis, progress=False)


def test_same_identity_pairs():
    g, p = same_identity_pairs(np.array([5, 7, 5, 5]))
    assert sorted(zip(g.tolist(), p.tolist())) == [(0, 2), (0, 3), (2, 0), (2, 3), (3, 0), (3, 2)]


def test_identify_1n_known_answer():
    gallery = np.eye(4, dtype=np.float32)
    glab = [0, 1, 2, -1]  # the last entry is a pure distractor
    probes = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 0.6, 0.8], [0, 0, 0, 1]], np.float32)
    res = identify_1n(gallery, glab, probes, [0, 1, 2, 9], max_rank=3, fars=(0.1, 0.5))
    # probe 1 (id 1) prefers id 1 (0.8) -> rank 1; probe 2 (id 2) prefers the distractor -> rank 2;
    # probe 3 has no gallery identity and is skipped
    assert res["num_probes"] == 3 and res["cmc"] == [2 / 3, 1.0, 1.0]
    # 9 impostor scores; genuine d^2 = 0, 0.4, 0.4; impostor d^2 sorted: 0.4 (gal 0 vs probe 1),
    # 0.4 (distractor vs probe 2), then >= 1.2
    assert res["tar_at_far"][0.1] is None
    assert res["tar_at_far"][0.5] == 1.0
    with pytest.raises(ConfigError, match="no probe identity appears in the gallery"):
        identify_1n(gallery, glab, probes[3:], [9])
