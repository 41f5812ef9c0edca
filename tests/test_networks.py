"""Every registered network builds and runs; options, heads, PReLU and the CLI behave."""
import mxnet as mx
import numpy as np
import pytest

from insightgluon.errors import ConfigError
from insightgluon.networks import NETWORKS, get_network, network_names
from insightgluon.networks.summary import summarize
from insightgluon.nn import HEADS, NativePReLU, PReLU

LEGACY_NAMES = {"r18", "r34", "r49", "r50", "r74", "r90", "r100", "r124", "r101", "r152", "r200",
                "r269", "y1", "m1", "m2", "p68", "p92", "p107", "p131", "d121", "d161", "d169", "d201",
                "i4", "n1", "x1", "s20", "s36", "s60", "s64", "s104"}
ARCFACE_TORCH_NAMES = {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "mbf", "mbf_large",
                       "vit_t", "vit_s", "vit_b", "vit_l"}


# The deepest graphs take several seconds each on one core even when thin.
HEAVY = {"r124", "r200", "r269", "d161", "d169", "d201", "i4", "p68", "p92", "p107", "p131", "n1"}
# DPN reads no width multiplier: p107 and p131 hold 80-87 M parameters, eager and hybridized.
FULL_WIDTH = {"p107", "p131"}
WALK = [pytest.param(n, marks=[pytest.mark.slow] + ([pytest.mark.budget(
    reason="a full-width DPN (80-87 M parameters) run twice", memory_gib=1.5)] if n in FULL_WIDTH else []))
    if n in HEAVY else n for n in sorted(LEGACY_NAMES)]


def _images(n=2, seed=0, side=112):
    return mx.nd.array(np.random.RandomState(seed).uniform(0, 255, (n, 3, side, side)))


def _run_both(net, x):
    net.initialize(mx.init.Xavier())
    eager = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    return eager, net(x).asnumpy()


def test_registry_has_every_legacy_name():
    assert set(network_names()) == LEGACY_NAMES | ARCFACE_TORCH_NAMES


@pytest.mark.parametrize("name", WALK)
def test_every_network_runs_hybridized_and_not(name):
    # A quarter of the width (where the family reads it) and 32x32 faces keep the walk fast; the structure
    # is the full one. MobileFaceNet's GDC head needs its 7x7 map: 112x112.
    net = get_network(name, emb_size=8, version_multiplier=0.25)
    eager, hybrid = _run_both(net, _images(side=112 if name == "y1" else 32))
    assert eager.shape == (2, 8)
    assert np.isfinite(eager).all()
    np.testing.assert_allclose(hybrid, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(LEGACY_NAMES))
def test_every_network_builds_at_full_width(name):
    """Every layer's shape agrees at full width and 112x112 (112x96 for SphereNet), by shape
    inference on the symbol: nothing is allocated."""
    net = get_network(name, emb_size=8)
    out = net(mx.sym.var("data"))
    side = 96 if name.startswith("s") else 112
    arg_shapes, out_shapes, _ = out.infer_shape(data=(1, 3, 112, side))
    assert out_shapes == [(1, 8)]
    assert [shape for shape in arg_shapes if not all(shape)] == []  # every weight's shape is known


def test_unknown_network_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown network 'r7'; choose one of: .*r100.*y1"):
        get_network("r7")


@pytest.mark.parametrize("option, value", [("version_unit", 4), ("version_input", 3),
                                           ("version_se", 2), ("version_output", "Q"),
                                           ("version_act", "swish"), ("emb_size", 0),
                                           ("version_multiplier", 0)])
def test_bad_options_fail_with_one_line(option, value):
    with pytest.raises(ConfigError, match=option) as err:
        get_network("r18", **{option: value})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("head", HEADS.names())
def test_every_head_on_a_thin_resnet(head):
    net = get_network("r18", emb_size=8, version_output=head, version_multiplier=0.25)
    eager, hybrid = _run_both(net, _images())
    width = {"A": 128, "AX": 128, "Z": 128 * 49}.get(head, 8)
    assert eager.shape == (2, width)
    np.testing.assert_allclose(hybrid, eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("unit", [1, 2, 3])
@pytest.mark.parametrize("stem", [0, 1, 2])
def test_resnet_unit_and_stem_versions(unit, stem):
    net = get_network("r18", emb_size=8, version_unit=unit, version_input=stem, version_se=1,
                      version_act="relu", version_multiplier=0.25)
    eager, hybrid = _run_both(net, _images())
    assert eager.shape == (2, 8)
    np.testing.assert_allclose(hybrid, eager, rtol=1e-4, atol=1e-4)


def test_legacy_parameter_names_have_no_gluon_prefix():
    r50 = set(get_network("r50").collect_params().keys())
    assert {"conv0_weight", "bn0_gamma", "bn0_moving_var", "relu0_gamma",
            "stage1_unit1_bn1_gamma", "stage1_unit1_conv1sc_weight", "stage1_unit1_sc_beta",
            "stage1_unit1_relu1_gamma", "stage4_unit3_bn3_moving_mean", "bn1_gamma",
            "pre_fc1_weight", "pre_fc1_bias", "fc1_gamma", "fc1_moving_var"} <= r50
    assert "stage4_unit4_bn1_gamma" not in r50 and "stage3_unit14_bn1_gamma" in r50
    y1 = set(get_network("y1").collect_params().keys())
    assert {"conv_1_conv2d_weight", "conv_1_relu_gamma", "res_3_block3_conv_proj_batchnorm_beta",
            "dconv_45_conv_dw_conv2d_weight", "conv_6dw7_7_conv2d_weight", "pre_fc1_weight",
            "fc1_beta"} <= y1


def test_version_act_native_and_fast_prelu_share_parameters():
    fast = get_network("y1", emb_size=8, version_multiplier=0.25)
    native = get_network("y1", emb_size=8, version_multiplier=0.25, version_act="prelu_native")
    fast.initialize(mx.init.Xavier())
    native.initialize()
    x = _images()
    fast(x)
    native(x)
    native.collect_params().load_dict({k: v.data() for k, v in fast.collect_params().items()})
    np.testing.assert_allclose(fast(x).asnumpy(), native(x).asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial", [True, False])
def test_fast_prelu_matches_leaky_relu_exactly(spatial, hybridize):
    """Output bit-identical; input gradient too where x <= 0 (also at 0), within one rounding where
    x > 0; slope gradient to summation order."""
    rng = np.random.RandomState(0)
    shape = (4, 6, 5, 7) if spatial else (4, 6)
    x_np = rng.standard_normal(shape).astype(np.float32)
    x_np.reshape(-1)[::5] = 0.0
    slope = rng.uniform(-0.5, 1.5, 6).astype(np.float32)
    head = rng.standard_normal(shape).astype(np.float32)
    results = []
    for cls in (PReLU, NativePReLU):
        block = cls("relu0", 6, spatial=spatial)
        block.initialize()
        block.gamma.set_data(mx.nd.array(slope))
        if hybridize:
            block.hybridize(static_alloc=True, static_shape=True)
        x = mx.nd.array(x_np)
        x.attach_grad()
        with mx.autograd.record():
            y = block(x)
        y.backward(mx.nd.array(head))
        results.append((y.asnumpy(), x.grad.asnumpy(), block.gamma.grad().asnumpy()))
    (y_fast, dx_fast, da_fast), (y_ref, dx_ref, da_ref) = results
    assert np.array_equal(y_fast, y_ref)
    positive = x_np > 0
    assert np.array_equal(dx_fast[~positive], dx_ref[~positive])
    np.testing.assert_allclose(dx_fast[positive], dx_ref[positive], rtol=2 * np.finfo(np.float32).eps, atol=0)
    np.testing.assert_allclose(da_fast, da_ref, rtol=1e-5, atol=1e-5)
    assert block.gamma.name == "relu0_gamma" and block.gamma.shape == (6,)


def test_prelu_needs_channels():
    with pytest.raises(ValueError, match="relu0: PReLU needs its channel count"):
        PReLU("relu0", 0)


def test_summary_matches_published_sizes():
    r100 = summarize("r100", emb_size=512)
    assert abs(r100.params / 1e6 - 65.1) < 0.3  # 65.13 M published (incl. the output layer)
    assert abs(r100.mflops / 1e3 - 24.2) < 0.1  # 24.2 GFLOPs published
    y1 = summarize("y1", emb_size=128)
    assert abs(y1.params / 1e6 - 1.0) < 0.05 and y1.output_shape == (1, 128)
    assert 400 < y1.mflops < 480  # 221 M multiply-adds in the paper


def test_cli_lists_and_summarises(capsys):
    from insightgluon.cli import main

    assert main(["networks", "--names-only"]) == 0
    assert set(capsys.readouterr().out.split()) == LEGACY_NAMES | ARCFACE_TORCH_NAMES
    assert main(["networks"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(rows) == LEGACY_NAMES | ARCFACE_TORCH_NAMES
    # arcface_torch's table: r100 24.2 GFLOPs (its iresnet100 is our r100's graph); ViT-T 1.5 G multiply-adds
    assert rows["iresnet100"].split()[2] == "65.23" and rows["iresnet100"].split()[3].startswith("24179")
    assert rows["vit_t"].split()[2] == "19.14" and rows["vit_t"].split()[3] == "3009.8"
    assert "112x96" in rows["s20"] and "SphereNet-20" in rows["s20"] and "112x112" in rows["x1"]
    assert rows["r100"].split()[2] == "65.23" and rows["r100"].split()[3].startswith("24179")
    assert main(["networks", "y1", "--emb-size", "128"]) == 0
    out = capsys.readouterr().out
    assert "y1" in out and "(1, 128)" in out and "1.02" in out
    assert main(["networks", "r7"]) == 2


def test_registry_is_the_shared_kind():
    assert NETWORKS.kind == "network" and "r100" in NETWORKS


@pytest.mark.parametrize("hybridize", [False, True])
def test_channel_concat_trains_where_onednn_concat_cannot(hybridize):
    """oneDNN's concat cannot split a blocked gradient at 168-channel offsets; channel_concat can,
    and computes the same concatenation."""
    from mxnet.gluon import HybridBlock

    from insightgluon.nn import Conv, channel_concat

    class Cell(HybridBlock):
        def __init__(self, width):
            super().__init__(prefix="")
            self.width = width
            with self.name_scope():
                self.parts = [Conv(f"part{i}", width) for i in range(6)]
                for part in self.parts:
                    self.register_child(part)
                self.out = Conv("out", 336)

        def hybrid_forward(self, F, x):
            y = channel_concat(F, [p(x) for p in self.parts], [self.width] * 6, "cell_concat")
            return self.out(F.relu(y))

    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 64, 28, 28)))
    for width in (168, 32):
        cell = Cell(width)
        cell.initialize(mx.init.Xavier())
        if hybridize:
            cell.hybridize(static_alloc=True, static_shape=True)
        with mx.autograd.record():
            loss = cell(x).sum()
        loss.backward()
        want = mx.nd.concat(*[p(x) for p in cell.parts], dim=1)
        got = channel_concat(mx.nd, [p(x) for p in cell.parts], [width] * 6, "c")
        np.testing.assert_array_equal(got.asnumpy(), want.asnumpy())
        assert np.isfinite(cell.parts[0].weight.grad().asnumpy()).all()
