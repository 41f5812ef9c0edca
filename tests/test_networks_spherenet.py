"""SphereNet (``s20`` ... ``s104``): layers, initialisation, multipliers, face sizes, bad checkpoints."""
import mxnet as mx
import numpy as np
import pytest

from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.networks import get_network, load_legacy_params
from insightgluon.networks.spherenet import SPHERENET_SPECS
from insightgluon.nn import BatchNorm, NativePReLU, PReLU
from insightgluon.train.model import legacy_initializer

NAMES = [f"s{depth}" for depth in sorted(SPHERENET_SPECS)]
STAGES = 4


def _images(height=112, width=112, n=1, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(0, 255, (n, 3, height, width)))


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def _checkpoint(tmp_path, net, x, tag="ckpt"):
    """Save ``net`` (initialised and run on ``x``) as a 2018-style ``.params`` file."""
    net(x)
    path = str(tmp_path / f"{tag}-0000.params")
    mx.nd.save(path, {f"arg:{name}": p.data() for name, p in net.collect_params().items()})
    return path


def _thin(name, **options):
    net = get_network(name, emb_size=8, version_multiplier=0.25, **options)
    net.initialize(mx.init.Xavier())
    return net


def test_every_depth_is_registered_and_others_are_refused():
    for name in NAMES:
        get_network(name)
    with pytest.raises(ConfigError, match=r"unknown network 's50'.*s104.*s20"):
        get_network("s50")


@pytest.mark.parametrize("name", NAMES)
def test_layers_are_the_2018_ones(name):
    units = SPHERENET_SPECS[int(name[1:])]
    net = get_network(name)
    params = net.collect_params()
    convs = {n for n in params if n.startswith("conv") and n.endswith("_weight")}
    expected = {f"conv{s}_{k}_weight" for s in range(1, STAGES + 1)
                for k in range(1, 2 + 2 * units[s - 1])}
    assert convs == expected
    assert {n for n in params if n.endswith("_bias")} == \
        {f"conv{s}_1_bias" for s in range(1, STAGES + 1)} | {"fc1_bias"}
    slopes = sorted(b.gamma.name for b in _blocks(net) if isinstance(b, PReLU))
    assert slopes == sorted(n.replace("conv", "relu").replace("_weight", "_gamma") for n in convs)
    assert not any(isinstance(b, (NativePReLU, BatchNorm)) for b in _blocks(net))
    assert len(list(params.keys())) == 2 * len(convs) + STAGES + 2
    assert params["conv4_1_weight"].shape == (512, 256, 3, 3)
    assert params["fc1_weight"].shape == (512, 0)  # inferred from the face size


def test_legacy_initializer_keeps_the_declared_initialisation():
    net = get_network("s20")
    net.initialize(legacy_initializer("s20"))
    net(_images(112, 96))
    for name, param in net.collect_params().items():
        value = param.data().asnumpy()
        if name.startswith("conv") and name.endswith("_weight"):
            assert abs(value.std() / 0.01 - 1) < 0.1, (name, value.std())
            assert abs(value.mean()) < 2e-3, name
        elif name.endswith("_bias"):
            assert not value.any(), name
        elif name.endswith("_gamma"):
            assert np.all(value == 0.25), name
    # fc1_weight declares nothing: the global Xavier applies (uniform, fan-in, magnitude 2).
    fc1 = net.collect_params()["fc1_weight"].data().asnumpy()
    bound = np.sqrt(2.0 / fc1.shape[1])
    assert np.abs(fc1).max() <= bound and np.abs(fc1).max() > 0.9 * bound


def test_multipliers_are_the_2018_ones():
    params = get_network("s36").collect_params()
    declared = {name: (p.lr_mult, p.wd_mult) for name, p in params.items()}
    for stage in range(1, STAGES + 1):
        assert declared.pop(f"conv{stage}_1_bias") == (2.0, 0.0)
    assert declared.pop("fc1_bias") == (2.0, 0.0)
    assert declared.pop("fc1_weight") == (1.0, 1.0)
    assert set(declared.values()) == {(1.0, 1.0)}  # conv weights and PReLU slopes


@pytest.mark.parametrize("height, width, flat", [(112, 96, 512 * 7 * 6), (112, 112, 512 * 7 * 7)])
def test_both_face_sizes_give_the_embedding(height, width, flat, hybridize):
    net = get_network("s20")
    net.initialize(legacy_initializer("s20"))
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    out = net(_images(height, width, n=2))
    assert out.shape == (2, 512)
    assert np.isfinite(out.asnumpy()).all()
    assert net.collect_params()["fc1_weight"].shape == (512, flat)


def test_thin_network_same_hybridized_and_not():
    net = _thin("s64")
    x = _images(112, 96, n=2)
    eager = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(net(x).asnumpy(), eager, rtol=1e-4, atol=1e-4)


def test_exported_graph_keeps_the_legacy_operator_names(tmp_path):
    net = _thin("s20")
    net.hybridize()
    net(_images(112, 96))
    net.export(str(tmp_path / "s20"))
    sym = mx.sym.load(str(tmp_path / "s20-symbol.json"))
    outputs = set(sym.get_internals().list_outputs())
    assert {"fc1_output", "conv1_1_output", "relu1_1_output", "conv4_3_output",
            "relu4_3_output"} <= outputs
    assert "LeakyReLU" not in sym.tojson()


def test_version_options_are_ignored_as_in_2018():
    plain = get_network("s20")
    other = get_network("s20", version_se=1, version_input=2, version_output="GDC", version_unit=1,
                        version_act="relu", bn_mom=0.5)
    assert {n: p.shape for n, p in plain.collect_params().items()} == \
        {n: p.shape for n, p in other.collect_params().items()}
    acts = [b for b in _blocks(other) if b.name.startswith("relu")]
    assert len(acts) == 2 * sum(SPHERENET_SPECS[20]) + STAGES and all(isinstance(b, PReLU) for b in acts)


def test_bad_options_fail_with_one_line():
    for option, value in (("emb_size", 0), ("version_multiplier", 0)):
        with pytest.raises(ConfigError, match=option) as err:
            get_network("s20", **{option: value})
        assert "\n" not in str(err.value)


def test_checkpoint_of_the_other_face_size_fails_once_the_size_is_fixed(tmp_path):
    path = _checkpoint(tmp_path, _thin("s20"), _images(112, 96), "s20_112x96")
    fresh = get_network("s20", emb_size=8, version_multiplier=0.25)
    load_legacy_params(fresh, path)  # the face size comes with the checkpoint
    assert fresh(_images(112, 96)).shape == (1, 8)
    with pytest.raises(mx.base.MXNetError):
        fresh(_images(112, 112))
    sized = _thin("s20")
    sized(_images(112, 112))
    expected = r"fc1_weight has shape \(8, 5376\), the network expects \(8, 6272\)"
    with pytest.raises(CheckpointError, match=expected) as err:
        load_legacy_params(sized, path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("saved, wanted, pattern", [
    ("s36", "s20", r"32 parameters the network does not have: "),
    ("s20", "s36", r"missing 32 network parameters: conv1_4_weight, relu1_4_gamma, conv1_5_weight"),
    ("s60", "s64", r"missing 8 network parameters: conv3_30_weight, relu3_30_gamma"),
])
def test_checkpoint_of_another_depth_fails_naming_parameters(tmp_path, saved, wanted, pattern):
    path = _checkpoint(tmp_path, _thin(saved), _images(112, 96), saved)
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_legacy_params(get_network(wanted, emb_size=8, version_multiplier=0.25), path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, pattern", [
    (dict(emb_size=16), r"fc1_weight has shape \(16, 5376\), the network expects \(8, 0\)"),
    (dict(version_multiplier=0.5),
     r"conv1_1_weight has shape \(32, 3, 3, 3\), the network expects \(16, 3, 3, 3\)"),
])
def test_checkpoint_of_other_widths_fails_naming_the_parameter(tmp_path, options, pattern):
    other = get_network("s20", **{**dict(emb_size=8, version_multiplier=0.25), **options})
    other.initialize(mx.init.Xavier())
    path = _checkpoint(tmp_path, other, _images(112, 96))
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_legacy_params(get_network("s20", emb_size=8, version_multiplier=0.25), path)
    assert "\n" not in str(err.value)
