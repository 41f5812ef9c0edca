"""Margin heads against independent NumPy references: values and gradients."""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from insightgluon.errors import ConfigError
from insightgluon.losses import LEGACY_LOSS_TYPES, LOSSES, accuracy, ce_loss, create_loss, loss_name

N, EMB, C = 6, 5, 7


# --------------------------------------------------------------------------- NumPy references
def np_cos(x, w):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    return xn @ wn.T


def np_ce(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y]


def np_target_loss(target_fn, s):
    """Per-sample CE with the target cosine replaced by target_fn(cos_t) (legacy fc7 + one_hot·(new-zy))."""
    def loss(x, w, y):
        cos = np_cos(x, w)
        logits = s * cos
        rows = np.arange(len(y))
        logits[rows, y] = s * target_fn(cos[rows, y])
        return np_ce(logits, y)
    return loss


def np_arcface(m, easy):
    def fn(cos_t):
        sin_t = np.sqrt(1.0 - cos_t ** 2)
        new = cos_t * math.cos(m) - sin_t * math.sin(m)
        if easy:
            return np.where(cos_t > 0, new, cos_t)
        return np.where(cos_t > math.cos(math.pi - m), new, cos_t - math.sin(math.pi - m) * m)
    return fn


def np_combined(a, m, b):
    def fn(cos_t):
        if a == 1.0 and m == 0.0:
            return cos_t - b
        t = np.arccos(cos_t) * (a if a != 1.0 else 1.0)
        t = t + (m if m > 0 else 0.0)
        return np.cos(t) - (b if b > 0 else 0.0)
    return fn


def np_softmax_loss(x, w, y, bias):
    return np_ce(x @ w.T + bias, y)


def num_grad(f, arr, eps=1e-6):
    """Central-difference gradient of scalar f at arr (float64)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def close(got, want, tol=2e-3):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# --------------------------------------------------------------------------- harness
def run_head(head, x, y, w, bias=None, hybridize=False):
    """Forward+backward of sum(loss); returns loss, logits, d/dx, d/dW (and d/db)."""
    head.initialize()
    head.fc7_weight.set_data(mx.nd.array(w))
    if bias is not None:
        head.fc7_bias.set_data(mx.nd.array(bias))
    if hybridize:
        head.hybridize()
    xs = mx.nd.array(x)
    xs.attach_grad()
    with autograd.record():
        loss, logits = head(xs, mx.nd.array(y))
    loss.backward()
    grads = [xs.grad.asnumpy(), head.fc7_weight.grad().asnumpy()]
    if bias is not None:
        grads.append(head.fc7_bias.grad().asnumpy())
    return loss.asnumpy(), (None if logits is None else logits.asnumpy()), grads


def check_against(head, ref, x, y, w, hybridize, tol=2e-3):
    loss, logits, (gx, gw) = run_head(head, x, y, w, hybridize=hybridize)
    close(loss, ref(x, w, y), tol)
    close(gx, num_grad(lambda: ref(x, w, y).sum(), x), tol)
    close(gw, num_grad(lambda: ref(x, w, y).sum(), w), tol)
    return loss, logits


def random_case(rng, n=N, emb=EMB, c=C):
    x = rng.normal(size=(n, emb)) * 3.0
    w = rng.normal(size=(c, emb))
    y = rng.integers(0, c, size=n)
    return x, w, y


# --------------------------------------------------------------------------- tests
def test_softmax_matches_numpy(hybridize):
    rng = np.random.default_rng(1)
    x, w, y = random_case(rng)
    bias = rng.normal(size=C)
    head = create_loss("softmax", C, EMB)
    loss, _, (gx, gw, gb) = run_head(head, x, y, w, bias, hybridize)
    ref = lambda: np_softmax_loss(x, w, y, bias).sum()  # noqa: E731
    close(loss, np_softmax_loss(x, w, y, bias))
    close(gx, num_grad(ref, x))
    close(gw, num_grad(ref, w))
    close(gb, num_grad(ref, bias))


def test_softmax_bias_multipliers_and_no_bias():
    head = create_loss(0, C, EMB, fc7_lr_mult=3.0, fc7_wd_mult=0.5)
    params = head.collect_params()
    assert (params["fc7_bias"].lr_mult, params["fc7_bias"].wd_mult) == (2.0, 0.0)
    assert (params["fc7_weight"].lr_mult, params["fc7_weight"].wd_mult) == (3.0, 0.5)
    assert sorted(create_loss(0, C, EMB, fc7_no_bias=True).collect_params()) == ["fc7_weight"]
    assert sorted(create_loss("arcface", C, EMB).collect_params()) == ["fc7_weight"]


def test_cosface_matches_numpy(hybridize):
    rng = np.random.default_rng(2)
    x, w, y = random_case(rng)
    head = create_loss("cosface", C, EMB, margin_s=16.0, margin_m=0.35)
    check_against(head, np_target_loss(lambda c: c - 0.35, 16.0), x, y, w, hybridize)


@pytest.mark.parametrize("easy", [False, True])
def test_arcface_matches_numpy(hybridize, easy):
    rng = np.random.default_rng(3)
    x, w, y = random_case(rng, n=12)
    # Put the first samples at θ ≈ 170° from their class (fallback branch θ+m>π) and the
    # next ones at θ ≈ 100° (cos<0: easy margin keeps cos θ) – away from the branch edges.
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    for i, deg in enumerate([170, 165, 100, 120]):
        ortho = rng.normal(size=EMB)
        ortho -= ortho @ wn[y[i]] * wn[y[i]]
        ortho /= np.linalg.norm(ortho)
        x[i] = 4.0 * (math.cos(math.radians(deg)) * wn[y[i]] + math.sin(math.radians(deg)) * ortho)
    cos_t = np_cos(x, w)[np.arange(12), y]
    assert (cos_t < math.cos(math.pi - 0.5)).sum() >= 2 and ((cos_t < 0) & (cos_t > -0.8)).sum() >= 2
    head = create_loss("arcface", C, EMB, margin_s=16.0, margin_m=0.5, easy_margin=int(easy))
    _, logits = check_against(head, np_target_loss(np_arcface(0.5, easy), 16.0), x, y, w, hybridize)
    # Non-target logits stay s·cos θ.
    cos = np_cos(x, w)
    mask = np.ones_like(cos, bool)
    mask[np.arange(12), y] = False
    close(logits[mask], 16.0 * cos[mask])


def test_arcface_default_scale_and_margin(hybridize):
    rng = np.random.default_rng(4)
    x, w, y = random_case(rng)
    head = create_loss(4, C, EMB)
    check_against(head, np_target_loss(np_arcface(0.5, False), 64.0), x, y, w, hybridize, tol=5e-3)


@pytest.mark.parametrize("abm", [(0.9, 0.4, 0.15), (1.0, 0.3, 0.2), (1.2, 0.0, 0.0), (1.0, 0.0, 0.25),
                                 (1.0, -0.2, -0.1)])
def test_combined_matches_numpy(hybridize, abm):
    a, m, b = abm
    rng = np.random.default_rng(5)
    x, w, y = random_case(rng)
    head = create_loss("combined", C, EMB, margin_s=16.0, margin_a=a, margin_m=m, margin_b=b)
    check_against(head, np_target_loss(np_combined(a, m, b), 16.0), x, y, w, hybridize)


def test_combined_identity_is_normalised_softmax():
    rng = np.random.default_rng(6)
    x, w, y = random_case(rng)
    head = create_loss(5, C, EMB, margin_s=10.0, margin_a=1.0, margin_m=0.0, margin_b=0.0)
    loss, logits, _ = run_head(head, x, y, w)
    close(logits, 10.0 * np_cos(x, w))
    close(loss, np_ce(10.0 * np_cos(x, w), y))


@pytest.mark.parametrize("name", ["arcface", "combined", "cosface"])
def test_finite_gradients_at_the_edges(name):
    """cos θ = +1 and -1 exactly (embedding = ±weight row), s = 1024, float32."""
    w = np.eye(C, EMB + 3)[:, :EMB + 3] + 0.0
    x = np.stack([w[0], -w[1], w[2] * 50.0, -w[3] * 1e-3])
    y = np.array([0, 1, 2, 3])
    head = create_loss(name, C, EMB + 3, margin_s=1024.0, margin_a=0.9, margin_m=0.5, margin_b=0.1)
    loss, logits, grads = run_head(head, x, y, w)
    for arr in (loss, logits, *grads):
        assert np.isfinite(arr).all()


def test_accuracy_uses_margin_logits():
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 0.5, 2.0], [1.0, 4.0, 0.0]])
    assert accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert accuracy(mx.nd.array(logits), mx.nd.array([0, 2, 1])) == 1.0
    with pytest.raises(ValueError, match="do not match"):
        accuracy(logits, np.array([0, 1]))
    assert ce_loss(logits, np.array([0, 2, 1])) == pytest.approx(np_ce(logits, np.array([0, 2, 1])).mean())


def test_plain_logits_have_no_margin():
    rng = np.random.default_rng(7)
    x, w, y = random_case(rng)
    head = create_loss("arcface", C, EMB, margin_s=8.0)
    _, logits, _ = run_head(head, x, y, w)
    plain = head.plain_logits(mx.nd.array(x)).asnumpy()
    close(plain, 8.0 * np_cos(x, w))
    assert (logits[np.arange(N), y] < plain[np.arange(N), y]).all()


def test_legacy_table_and_names():
    assert LEGACY_LOSS_TYPES == {0: "softmax", 1: "sphereface", 2: "cosface", 4: "arcface",
                                 5: "combined", 12: "triplet"}
    assert loss_name(4) == "arcface" and loss_name("4") == "arcface" and loss_name("cosface") == "cosface"
    with pytest.raises(ConfigError, match="unknown loss-type 3; legacy loss types are: 0 .softmax."):
        loss_name(3)
    with pytest.raises(ConfigError, match="unknown loss 'arcfcae'; choose one of: .*arcface"):
        create_loss("arcfcae", C, EMB)


@pytest.mark.parametrize("hyper, message", [
    (dict(margin_m=2.0), "margin_m=2.0 must be <"),
    (dict(margin_m=-0.1), "margin_m=-0.1 must be >= 0"),
    (dict(margin_s=0), "margin_s=0 must be > 0"),
    (dict(margin_s="big"), "margin_s='big' is not a float"),
    (dict(fc7_init="uniform"), "fc7_init='uniform' must be"),
    (dict(easy_margin="maybe"), "easy_margin='maybe' is not a boolean"),
])
def test_bad_hyper_parameters(hyper, message):
    with pytest.raises(ConfigError, match=f"^loss arcface: {message}"):
        create_loss("arcface", C, EMB, **hyper)
    with pytest.raises(ConfigError, match="num_classes=0"):
        create_loss("arcface", 0, EMB)


def test_registry_walk_every_loss_runs():
    """Every registered loss builds, runs forward+backward and gives finite values."""
    rng = np.random.default_rng(8)
    labels = np.repeat(np.arange(3), 4)
    x = rng.normal(size=(12, EMB))
    for name in LOSSES.names():
        head = create_loss(name, C, EMB, images_per_identity=4, triplet_alpha=0.3)
        head.initialize()
        xs = mx.nd.array(x)
        xs.attach_grad()
        head.set_step(10)
        with autograd.record():
            loss, logits = head(xs, mx.nd.array(labels))
        loss.backward()
        assert loss.shape == (12,), name
        assert np.isfinite(loss.asnumpy()).all() and np.isfinite(xs.grad.asnumpy()).all(), name
        if logits is not None:
            assert logits.shape[0] == 12 and 0.0 <= head.accuracy(logits, labels) <= 1.0
