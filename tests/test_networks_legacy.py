"""2018 checkpoints load into our networks and give the same embeddings; exports load back.

The legacy graphs are written here with ``mx.sym`` from the documented facts
(layer names, unit structure, BN settings), independently of the package.
"""
import mxnet as mx
import numpy as np
import pytest

from insightgluon.errors import CheckpointError
from insightgluon.model_io import load_symbol_block
from insightgluon.networks import get_network, load_legacy_params, read_legacy_params

BN = dict(fix_gamma=False, eps=2e-5, momentum=0.9)


def _prelu(x, name):
    return mx.sym.LeakyReLU(x, act_type="prelu", name=name)


def _conv(x, name, filters, kernel, stride, pad, group=1):
    return mx.sym.Convolution(x, num_filter=filters, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(pad, pad), num_group=group, no_bias=True, name=name)


def _ir_unit(x, name, filters, stride, dim_match):
    b = mx.sym.BatchNorm(x, name=f"{name}_bn1", **BN)
    b = _conv(b, f"{name}_conv1", filters, 3, 1, 1)
    b = mx.sym.BatchNorm(b, name=f"{name}_bn2", **BN)
    b = _prelu(b, f"{name}_relu1")
    b = _conv(b, f"{name}_conv2", filters, 3, stride, 1)
    b = mx.sym.BatchNorm(b, name=f"{name}_bn3", **BN)
    if dim_match:
        return b + x
    sc = _conv(x, f"{name}_conv1sc", filters, 1, stride, 0)
    return b + mx.sym.BatchNorm(sc, name=f"{name}_sc", **BN)


def legacy_resnet(units, emb_size, filters=(64, 64, 128, 256, 512)):
    """fresnet, version_input=1, version_unit=3, output E."""
    data = mx.sym.var("data")
    body = (data - 127.5) * 0.0078125
    body = _conv(body, "conv0", filters[0], 3, 1, 1)
    body = _prelu(mx.sym.BatchNorm(body, name="bn0", **BN), "relu0")
    for i, count in enumerate(units):
        for j in range(count):
            body = _ir_unit(body, f"stage{i + 1}_unit{j + 1}", filters[i + 1], 2 if j == 0 else 1,
                            j > 0)
    body = mx.sym.BatchNorm(body, name="bn1", **BN)
    body = mx.sym.Dropout(body, p=0.4)
    fc = mx.sym.FullyConnected(body, num_hidden=emb_size, name="pre_fc1")
    return mx.sym.BatchNorm(fc, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def _mfn_conv(x, name, filters, kernel=1, stride=1, pad=0, group=1, act=True):
    x = _conv(x, f"{name}_conv2d", filters, kernel, stride, pad, group)
    x = mx.sym.BatchNorm(x, name=f"{name}_batchnorm", fix_gamma=False, momentum=0.9)  # eps 1e-3
    return _prelu(x, f"{name}_relu") if act else x


def _dresidual(x, name, out, expansion, stride):
    x = _mfn_conv(x, f"{name}_conv_sep", expansion)
    x = _mfn_conv(x, f"{name}_conv_dw", expansion, 3, stride, 1, group=expansion)
    return _mfn_conv(x, f"{name}_conv_proj", out, act=False)


def legacy_mobilefacenet(emb_size):
    data = mx.sym.var("data")
    x = (data - 127.5) * 0.0078125
    x = _mfn_conv(x, "conv_1", 64, 3, 2, 1)
    x = _mfn_conv(x, "conv_2_dw", 64, 3, 1, 1, group=64)
    for down, res, out, exp_down, exp_res, blocks in (("dconv_23", "res_3", 64, 128, 128, 4),
                                                      ("dconv_34", "res_4", 128, 256, 256, 6),
                                                      ("dconv_45", "res_5", 128, 512, 256, 2)):
        x = _dresidual(x, down, out, exp_down, 2)
        for i in range(blocks):
            x = _dresidual(x, f"{res}_block{i}", out, exp_res, 1) + x
    x = _mfn_conv(x, "conv_6sep", 512)
    x = _mfn_conv(x, "conv_6dw7_7", 512, 7, 1, 0, group=512, act=False)
    fc = mx.sym.FullyConnected(x, num_hidden=emb_size, name="pre_fc1")
    return mx.sym.BatchNorm(fc, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def _train_graph(embedding, num_classes=10):
    """The saved 2018 graph includes the fc7 classifier."""
    fc7 = mx.sym.FullyConnected(embedding, num_hidden=num_classes, no_bias=True, name="fc7")
    return mx.sym.SoftmaxOutput(fc7, name="softmax")


def _random_checkpoint(sym, prefix, batch):
    """Bind, initialise with random values (incl. BN statistics), save; return the params.

    Scales are chosen so activations stay O(1) through the residual stages, as in
    a trained model, which makes an absolute tolerance meaningful.
    """
    mod = mx.mod.Module(_train_graph(sym), data_names=["data"], label_names=["softmax_label"])
    mod.bind([("data", batch.shape)], [("softmax_label", (batch.shape[0],))], for_training=False)
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=1))
    args, auxs = mod.get_params()
    rng = np.random.RandomState(1)
    for name, arr in list(args.items()) + list(auxs.items()):
        if name.endswith(("_gamma", "_beta", "_moving_mean", "_bias")):
            arr[:] = rng.uniform(-0.2, 0.2, arr.shape) + (0.5 if name.endswith("_gamma") else 0)
        elif name.endswith("_moving_var"):
            arr[:] = rng.uniform(0.5, 1.5, arr.shape)
    mx.model.save_checkpoint(prefix, 1, mod.symbol, args, auxs)
    return args, auxs


def _legacy_embedding(sym, args, auxs, batch):
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind([("data", batch.shape)], for_training=False)
    mod.set_params({k: v for k, v in args.items() if not k.startswith("fc7")}, auxs)
    mod.forward(mx.io.DataBatch([batch]), is_train=False)
    return mod.get_outputs()[0].asnumpy()


CASES = {
    # r18-style graph (the r50 unit structure with fewer units keeps the test fast)
    "r18": (lambda emb: legacy_resnet((2, 2, 2, 2), emb), {}),
    "y1": (legacy_mobilefacenet, {"version_output": "GDC"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_legacy_checkpoint_gives_same_embeddings(tmp_path, name, hybridize):
    build, options = CASES[name]
    batch = mx.nd.array(np.random.RandomState(0).uniform(0, 255, (2, 3, 112, 112)))
    sym = build(32)
    args, auxs = _random_checkpoint(sym, str(tmp_path / "model"), batch)
    params_file = str(tmp_path / "model-0001.params")

    net = get_network(name, emb_size=32, **options)
    saved = set(read_legacy_params(params_file))
    ours = set(net.collect_params().keys())
    assert ours == saved - {"fc7_weight"}, (sorted(ours - saved), sorted(saved - ours))
    assert load_legacy_params(net, params_file) == []
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    got = net(batch).asnumpy()
    want = _legacy_embedding(sym, args, auxs, batch)
    assert got.shape == (2, 32)
    assert 0.1 < np.abs(want).max() < 100, np.abs(want).max()
    assert np.abs(got - want).max() < 1e-4


def test_export_loads_in_module_and_symbol_block(tmp_path):
    net = get_network("r18", emb_size=16, version_multiplier=0.25)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    batch = mx.nd.array(np.random.RandomState(0).uniform(0, 255, (2, 3, 112, 112)))
    want = net(batch).asnumpy()
    prefix = str(tmp_path / "exported")
    net.export(prefix, epoch=3)

    sym, args, auxs = mx.model.load_checkpoint(prefix, 3)
    assert "fc1_output" in sym.get_internals().list_outputs()
    np.testing.assert_allclose(_legacy_embedding(sym, args, auxs, batch), want, atol=1e-5)

    block = load_symbol_block(prefix, 3, layer="fc1")
    np.testing.assert_allclose(block(batch).asnumpy(), want, atol=1e-5)

    again = get_network("r18", emb_size=16, version_multiplier=0.25)
    assert load_legacy_params(again, f"{prefix}-0003.params") == []
    np.testing.assert_allclose(again(batch).asnumpy(), want, atol=1e-5)


def test_load_rejects_bad_files(tmp_path):
    net = get_network("r18", emb_size=16, version_multiplier=0.25)
    with pytest.raises(CheckpointError, match="no such parameter file"):
        load_legacy_params(net, str(tmp_path / "absent-0001.params"))
    junk = tmp_path / "junk-0001.params"
    junk.write_bytes(b"not a params file")
    with pytest.raises(CheckpointError, match=r"junk-0001\.params: not a readable"):
        load_legacy_params(net, str(junk))
    partial = tmp_path / "partial-0001.params"
    mx.nd.save(str(partial), {"arg:conv0_weight": mx.nd.zeros((16, 3, 3, 3))})
    with pytest.raises(CheckpointError, match=r"partial-0001\.params: missing \d+ network parameters"):
        load_legacy_params(net, str(partial))
    wrong = tmp_path / "wrong-0001.params"
    mx.nd.save(str(wrong), {"arg:conv0_weight": mx.nd.zeros((64, 3, 3, 3))})
    with pytest.raises(CheckpointError, match="conv0_weight has shape"):
        load_legacy_params(net, str(wrong), allow_missing=True)
