"""SphereFace, MagFace, Li-ArcFace, focal/SV AM-Softmax, triplet mining and Partial FC vs NumPy."""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from insightgluon.errors import ConfigError
from insightgluon.losses import PartialFCHead, create_loss
from insightgluon.losses.sphereface import sphereface_beta
from insightgluon.losses.triplet import mine_semi_hard
from test_losses import C, EMB, N, check_against, close, np_ce, np_cos, num_grad, random_case, run_head


# --------------------------------------------------------------------------- NumPy references
def np_sphereface(m, beta):
    def loss(x, w, y):
        wn = w / np.linalg.norm(w, axis=1, keepdims=True)
        fc = x @ wn.T
        rows = np.arange(len(y))
        x_norm = np.linalg.norm(x, axis=1)
        cos_t = fc[rows, y] / x_norm
        theta = np.arccos(cos_t)
        k = np.floor(theta * m / math.pi)
        psi = (-1.0) ** k * np.cos(m * theta) - 2 * k
        fc[rows, y] = x_norm * (psi + beta * cos_t) / (1 + beta)
        return np_ce(fc, y)
    return loss


def np_magface(s, la, ua, lm, um, lam):
    def loss(x, w, y):
        cos = np_cos(x, w)
        rows = np.arange(len(y))
        a = np.clip(np.linalg.norm(x, axis=1), la, ua)
        m = (um - lm) / (ua - la) * (a - la) + lm
        theta = np.arccos(cos[rows, y])
        target = np.where(cos[rows, y] > np.cos(np.pi - m), np.cos(theta + m),
                          cos[rows, y] - np.sin(np.pi - m) * m)
        logits = s * cos
        logits[rows, y] = s * target
        return np_ce(logits, y) + lam * (a / ua ** 2 + 1 / a)
    return loss


def np_li_arcface(s, m):
    def loss(x, w, y):
        theta = np.arccos(np_cos(x, w))
        rows = np.arange(len(y))
        theta[rows, y] += m
        return np_ce(s * (math.pi - 2 * theta) / math.pi, y)
    return loss


def np_am_focal(s, m, gamma):
    def loss(x, w, y):
        cos = np_cos(x, w)
        cos[np.arange(len(y)), y] -= m
        ce = np_ce(s * cos, y)
        return (1 - np.exp(-ce)) ** gamma * ce
    return loss


def np_sv_softmax(s, m, t):
    def loss(x, w, y):
        cos = np_cos(x, w)
        rows = np.arange(len(y))
        phi = cos[rows, y] - m
        out = np.where(cos > phi[:, None], t * cos + t - 1, cos)
        out[rows, y] = phi
        return np_ce(s * out, y)
    return loss


def np_triplet(x, a, p, n, alpha):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    per = np.maximum(((xn[a] - xn[p]) ** 2).sum(1) - ((xn[a] - xn[n]) ** 2).sum(1) + alpha, 0)
    out = np.zeros(len(x))
    np.add.at(out, a, per * len(x) / len(a))
    return out


# --------------------------------------------------------------------------- SphereFace
def test_sphereface_matches_numpy(hybridize):
    rng = np.random.default_rng(11)
    x, w, y = random_case(rng)
    head = create_loss(1, C, EMB, beta=3.0, beta_min=0.5, beta_freeze=10)
    head.set_step(5)
    assert head.beta == 3.0
    check_against(head, np_sphereface(4, 3.0), x, y, w, hybridize)


def test_sphereface_hybridized_graph_follows_the_schedule():
    rng = np.random.default_rng(12)
    x, w, y = random_case(rng)
    head = create_loss("sphereface", C, EMB, beta=100.0, beta_min=1.0, gamma=0.5, beta_freeze=0)
    run_head(head, x, y, w, hybridize=True)
    for step in (0, 3, 10, 1000):
        head.set_step(step)
        want = sphereface_beta(step, 100.0, 1.0, 0, 0.5, 1.0)
        assert head.beta == pytest.approx(want)
        loss, _ = head(mx.nd.array(x), mx.nd.array(y))
        close(loss.asnumpy(), np_sphereface(4, want)(x, w, y))
    assert head.beta == 1.0


def test_sphereface_beta_schedule_values():
    assert sphereface_beta(0) == 1000.0
    assert sphereface_beta(100) == pytest.approx(1000.0 / 13.0)
    assert sphereface_beta(10000) == 5.0
    assert sphereface_beta(200, beta_freeze=200) == 1000.0
    assert sphereface_beta(300, beta_freeze=200) == pytest.approx(1000.0 / 13.0)
    assert sphereface_beta(300, beta_freeze=200, power=2.0) == pytest.approx(1000.0 / 169.0)
    small = create_loss(1, 100, EMB, beta_freeze=200)
    assert small.schedule["beta_freeze"] == 200 and small.schedule["gamma"] == 0.12
    big = create_loss(1, 20001, EMB, beta_freeze=200, gamma=0.3)
    assert big.schedule["beta_freeze"] == 5000 and big.schedule["gamma"] == 0.06
    for step, want in [(0, 1000.0), (5000, 1000.0), (6000, 1000.0 / 61.0), (8316, 1000.0 / 199.96),
                       (9000, 5.0)]:
        big.set_step(step)
        assert big.beta == pytest.approx(want), step


def test_sphereface_psi_is_monotonic_and_continuous():
    head = create_loss(1, 1, 2, beta=0.0)
    head.initialize()
    head.fc7_weight.set_data(mx.nd.array([[1.0, 0.0]]))
    theta = np.linspace(0.0, math.pi, 181)
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    _, logits = head(mx.nd.array(x), mx.nd.zeros(len(theta)))
    psi = logits.asnumpy()[:, 0]
    assert psi[0] == pytest.approx(1.0) and psi[-1] == pytest.approx(-7.0, abs=1e-4)
    assert (np.diff(psi) < 1e-6).all() and np.abs(np.diff(psi)).max() < 0.2


# --------------------------------------------------------------------------- MagFace, Li-ArcFace, focal, SV
def test_magface_matches_numpy_with_per_sample_threshold(hybridize):
    rng = np.random.default_rng(13)
    x, w, y = random_case(rng, n=8)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    norms = [105.0, 100.0, 5.0, 150.0, 30.0, 60.0, 12.0, 80.0]
    degrees = [150.0, 170.0, 40.0, 60.0, 100.0, 20.0, 175.0, 90.0]
    for i, (r, deg) in enumerate(zip(norms, degrees)):
        ortho = rng.normal(size=EMB)
        ortho -= ortho @ wn[y[i]] * wn[y[i]]
        ortho /= np.linalg.norm(ortho)
        x[i] = r * (math.cos(math.radians(deg)) * wn[y[i]] + math.sin(math.radians(deg)) * ortho)
    hyper = dict(margin_s=8.0, magface_la=10.0, magface_ua=110.0, magface_lm=0.45, magface_um=0.8,
                 magface_lambda=3.0)
    head = create_loss("magface", C, EMB, **hyper)
    _, logits = check_against(head, np_magface(8.0, 10.0, 110.0, 0.45, 0.8, 3.0), x, y, w, hybridize)
    # Sample 0: a = 105, m(a) = 0.7825, θ = 150°: θ + m(a) > π although θ + l_m < π, so the
    # fallback applies; a threshold built from a fixed margin would not take it.
    m0 = 0.45 + 0.35 * 95.0 / 100.0
    assert logits[0, y[0]] == pytest.approx(8.0 * (math.cos(math.radians(150)) - m0 * math.sin(m0)), rel=1e-4)


def test_li_arcface_matches_numpy(hybridize):
    rng = np.random.default_rng(14)
    x, w, y = random_case(rng)
    head = create_loss("li-arcface", C, EMB, margin_s=8.0, margin_m=0.45)
    check_against(head, np_li_arcface(8.0, 0.45), x, y, w, hybridize)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_am_focal_matches_numpy(hybridize, gamma):
    rng = np.random.default_rng(15)
    x, w, y = random_case(rng)
    head = create_loss("am-focal", C, EMB, margin_s=8.0, margin_m=0.35, focal_gamma=gamma)
    check_against(head, np_am_focal(8.0, 0.35, gamma), x, y, w, hybridize)


@pytest.mark.parametrize("t", [1.0, 1.2, 1.5])
def test_sv_softmax_matches_numpy(hybridize, t):
    rng = np.random.default_rng(16)
    x, w, y = random_case(rng, n=10)
    cos = np_cos(x, w)
    assert (cos > (cos[np.arange(10), y] - 0.35)[:, None]).sum() > 10  # support vectors exist
    head = create_loss("sv-softmax", C, EMB, margin_s=8.0, margin_m=0.35, sv_t=t)
    check_against(head, np_sv_softmax(8.0, 0.35, t), x, y, w, hybridize)


@pytest.mark.parametrize("name", ["sphereface", "magface", "li-arcface", "am-focal", "sv-softmax"])
def test_variants_finite_at_the_edges(name):
    w = np.eye(C, EMB + 3)
    x = np.stack([w[0] * 200.0, -w[1] * 30.0, w[2], -w[3] * 1e-3])
    head = create_loss(name, C, EMB + 3, margin_s=1024.0, focal_gamma=0.5, beta=0.0)
    loss, logits, grads = run_head(head, x, np.array([0, 1, 2, 3]), w)
    for arr in (loss, logits, *grads):
        assert np.isfinite(arr).all()


def test_variant_bad_hyper_parameters():
    with pytest.raises(ConfigError, match="magface_la < magface_ua"):
        create_loss("magface", C, EMB, magface_la=120.0)
    with pytest.raises(ConfigError, match="sv_t=0.5 must be >= 1.0"):
        create_loss("sv-softmax", C, EMB, sv_t=0.5)
    with pytest.raises(ConfigError, match="focal_gamma=-1 must be >= 0"):
        create_loss("am-focal", C, EMB, focal_gamma=-1)
    with pytest.raises(ConfigError, match="triplet_alpha=0 must be > 0"):
        create_loss("triplet", C, EMB, triplet_alpha=0)
    with pytest.raises(ConfigError, match="images_per_identity=1 must be >= 2"):
        create_loss("triplet", C, EMB, images_per_identity=1)
    assert create_loss("triplet", C, EMB, images_per_identity=0).images_per_identity == 5
    assert create_loss("triplet", C, EMB, images_per_identity=3).images_per_identity == 3


# --------------------------------------------------------------------------- triplet
def _circle(degrees):
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_semi_hard_mining_on_a_hand_made_batch():
    # identity 0 at 0° and 30°; identity 1 at 40° and 180°; identity 2 at 90° and 95°.
    x = _circle([0.0, 30.0, 40.0, 180.0, 90.0, 95.0])
    labels = np.array([0, 0, 1, 1, 2, 2])
    a, p, n = mine_semi_hard(x, labels, 0.5, np.random.default_rng(0))
    # (0,1): d_ap = 0.27; 40° is semi-hard (0.47), 90°/95° are too easy (2.0, 2.17).
    # (2,3): d_ap = 3.53, nothing is farther.  (4,5): d_ap = 0.0076; no negative within 0.5.
    assert list(zip(a, p, n)) == [(0, 1, 2)]
    a, p, n = mine_semi_hard(x, labels, 2.5, np.random.default_rng(0))
    assert (0, 1) in set(zip(a, p)) and set(n[(a == 0) & (p == 1)]) <= {2, 4, 5}
    assert mine_semi_hard(x, labels, 2.5, np.random.default_rng(0), max_ap=0.1)[0].tolist() == [4]


def test_triplet_loss_and_gradient_match_numpy():
    x = _circle([0.0, 30.0, 40.0, 180.0, 90.0, 95.0]) * np.array([[2.0], [1.0], [3.0], [1.0], [1.0], [1.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    head = create_loss(12, 3, 2, triplet_alpha=0.5)
    assert head.needs_identity_batches and head.images_per_identity == 5
    xs = mx.nd.array(x)
    xs.attach_grad()
    with autograd.record():
        loss, logits = head(xs, mx.nd.array(labels))
    loss.backward()
    assert logits is None and head.last_triplets == 1
    a, p, n = np.array([0]), np.array([1]), np.array([2])
    want = np_triplet(x, a, p, n, 0.5)
    close(loss.asnumpy(), want)
    assert loss.asnumpy()[0] == pytest.approx(6 * (0.5 - (2 - 2 * math.cos(math.radians(40)))
                                                   + (2 - 2 * math.cos(math.radians(30)))), rel=1e-5)
    x64 = x.copy()
    close(xs.grad.asnumpy(), num_grad(lambda: np_triplet(x64, a, p, n, 0.5).sum(), x64))


def test_triplet_without_triplets_is_zero():
    head = create_loss("triplet", 2, 2, triplet_alpha=0.1)
    xs = mx.nd.array(_circle([0.0, 90.0, 180.0, 270.0]))
    xs.attach_grad()
    with autograd.record():
        loss, _ = head(xs, mx.nd.array([0, 1, 0, 1]))
    loss.backward()
    assert loss.asnumpy().tolist() == [0.0] * 4 and head.last_triplets == 0
    assert np.abs(xs.grad.asnumpy()).max() == 0.0
    with pytest.raises(ValueError, match="no logits"):
        head.accuracy(None, [0])


# --------------------------------------------------------------------------- Partial FC
@pytest.mark.parametrize("name", ["arcface", "cosface", "sphereface", "magface"])
def test_partial_fc_equals_full_head_at_rate_one(name):
    rng = np.random.default_rng(17)
    x, w, y = random_case(rng)
    hyper = dict(margin_s=16.0, beta=2.0, magface_la=1.0, magface_ua=10.0)
    full = run_head(create_loss(name, C, EMB, **hyper), x, y, w)
    sampled = run_head(PartialFCHead(create_loss(name, C, EMB, **hyper), 1.0), x, y, w)
    for got, want in zip([sampled[0], sampled[1], *sampled[2]], [full[0], full[1], *full[2]]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_partial_fc_samples_positives_and_matches_numpy():
    rng = np.random.default_rng(18)
    classes_total, emb = 50, 4
    x, w, y = random_case(rng, n=8, emb=emb, c=classes_total)
    head = create_loss("arcface", classes_total, emb, margin_s=16.0, sample_rate=0.2, seed=3)
    assert isinstance(head, PartialFCHead) and head.num_sample == 10
    loss, logits, (gx, gw) = run_head(head, x, y, w)
    classes = head.last_classes
    assert len(classes) == 10 and set(y) <= set(classes) and (np.diff(classes) > 0).all()
    local = np.searchsorted(classes, y)
    from test_losses import np_arcface, np_target_loss
    ref = np_target_loss(np_arcface(0.5, False), 16.0)
    close(loss, ref(x, w[classes], local))
    close(gx, num_grad(lambda: ref(x, w[classes], local).sum(), x))
    outside = np.setdiff1d(np.arange(classes_total), classes)
    assert np.abs(gw[outside]).max() == 0.0 and np.abs(gw[classes]).max() > 0
    assert head.accuracy(logits, y) == pytest.approx(np.mean(logits.argmax(1) == local))
    hits = head.correct(mx.nd.array(logits), mx.nd.array(y)).asscalar()
    assert hits == np.sum(logits.argmax(1) == local)
    with pytest.raises(ValueError, match="not those of the last forward"):
        head.accuracy(logits, np.full(8, outside[0]))
    # A new step draws different negatives but still keeps every positive.
    head(mx.nd.array(x), mx.nd.array(y))
    assert set(y) <= set(head.last_classes) and not np.array_equal(head.last_classes, classes)


def test_partial_fc_trains_with_a_gluon_trainer():
    rng = np.random.default_rng(19)
    x, w, y = random_case(rng, n=8, emb=4, c=40)
    head = create_loss("partial-fc", 40, 4, margin_s=16.0, margin_m=0.2)
    assert isinstance(head, PartialFCHead) and head.num_sample == 4
    head.initialize()
    trainer = gluon.Trainer(head.collect_params(), "sgd", {"learning_rate": 0.5, "wd": 0.0})
    assert list(head.collect_params()) == ["fc7_weight"]
    before = head.fc7_weight.data().asnumpy().copy()
    losses = []
    for _ in range(5):
        with autograd.record():
            loss, _ = head(mx.nd.array(x), mx.nd.array(y))
        loss.backward()
        trainer.step(len(y))
        losses.append(loss.mean().asscalar())
    assert losses[-1] < losses[0] and not np.allclose(before, head.fc7_weight.data().asnumpy())


def test_partial_fc_bad_configuration():
    with pytest.raises(ConfigError, match="sample_rate=0 must be > 0"):
        create_loss("arcface", C, EMB, sample_rate=0)
    with pytest.raises(ConfigError, match="sample_rate=1.5 must be <= 1"):
        create_loss("arcface", C, EMB, sample_rate=1.5)
    with pytest.raises(ConfigError, match="not plain softmax"):
        create_loss("softmax", C, EMB, sample_rate=0.5)
    assert create_loss("triplet", C, EMB, sample_rate=0.5).needs_identity_batches
