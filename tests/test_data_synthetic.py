"""The synthetic face dataset: determinism, disjoint packs, readable by the dataset and .bin readers."""
import os

import numpy as np

from insightgluon.data.bin import decode_bin
from insightgluon.data.faces import identity_params, render_face
from insightgluon.data.recordio import FaceRecordDataset
from insightgluon.data.synthetic import VERIFICATION_PACKS, make_synthetic_dataset, pair_plan, render_identity


def test_small_dataset_layout_and_determinism(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / "a"), num_ids=4, imgs_per_id=3, num_val_ids=3, pairs_per_bin=6)
    b = make_synthetic_dataset(str(tmp_path / "b"), num_ids=4, imgs_per_id=3, num_val_ids=3, pairs_per_bin=6,
                               num_workers=2)
    assert sorted(os.listdir(a)) == sorted(["train.rec", "train.idx", "property"] +
                                           [f"{n}.bin" for n in VERIFICATION_PACKS])
    for name in os.listdir(a):  # byte-identical with and without worker processes
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read(), name
    ds = FaceRecordDataset(a)
    assert (len(ds), ds.num_classes) == (12, 4) and ds[5][0].shape == (112, 112, 3)
    for name in VERIFICATION_PACKS:
        images, issame = decode_bin(os.path.join(a, f"{name}.bin"))
        assert images.shape == (12, 112, 112, 3) and issame.tolist() == [True, False] * 3


def test_pair_plans_are_disjoint_and_balanced():
    rng = np.random.default_rng(0)
    plans = [pair_plan(100, 50 + 10 * p, 10, rng) for p in range(3)]
    ids = [{g for a, b, _ in plan for g in (a, b)} for plan in plans]
    assert all(s <= set(range(50 + 10 * p, 60 + 10 * p)) for p, s in enumerate(ids))
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    for plan in plans:
        assert all((a == b) == same for a, b, same in plan) and sum(s for *_, s in plan) == 50


def test_images_vary_within_and_differ_between_identities():
    same = render_identity(0, 7, 2)
    assert same[0] != same[1]
    p, q = identity_params(np.random.default_rng(1)), identity_params(np.random.default_rng(2))
    img = render_face(p, np.random.default_rng(5))
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8 and 30 < img.std()
    assert not np.array_equal(img, render_face(q, np.random.default_rng(5)))
    assert np.array_equal(img, render_face(p, np.random.default_rng(5)))
    assert render_face(p, np.random.default_rng(5), size=64, pose=2.5, drift=0.7).shape == (64, 64, 3)
