"""2018 graphs written here with ``mx.sym`` from the documented facts (layer names, unit
structure, BN settings), independently of the package, and helpers to save and run them
as the 2018 code did (``mx.mod.Module``).
"""
import mxnet as mx
import numpy as np

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


def legacy_mobilefacenet(emb_size, zoo_head=False):
    """fmobilefacenet with the GDC head; ``zoo_head``: as the model-zoo ``model-y1-test2`` saved it
    (the dense operator ``pre_fc1`` with the weight variable ``fc1_weight``, 10x weight decay)."""
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
    weight = mx.sym.var("fc1_weight", lr_mult=1.0, wd_mult=10.0) if zoo_head else None
    fc = mx.sym.FullyConnected(x, weight=weight, num_hidden=emb_size, name="pre_fc1")
    return mx.sym.BatchNorm(fc, fix_gamma=True, eps=2e-5, momentum=0.9, name="fc1")


def train_graph(embedding, num_classes=10):
    """The saved 2018 graph includes the fc7 classifier."""
    fc7 = mx.sym.FullyConnected(embedding, num_hidden=num_classes, no_bias=True, name="fc7")
    return mx.sym.SoftmaxOutput(fc7, name="softmax")


def random_checkpoint(sym, prefix, batch):
    """Bind, initialise with random values (incl. BN statistics), save; return the params.

    Scales are chosen so activations stay O(1) through the residual stages, as in
    a trained model, which makes an absolute tolerance meaningful.
    """
    mod = mx.mod.Module(train_graph(sym), data_names=["data"], label_names=["softmax_label"])
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


def legacy_embedding(sym, args, auxs, batch):
    mod = mx.mod.Module(sym, data_names=["data"], label_names=None)
    mod.bind([("data", batch.shape)], for_training=False)
    mod.set_params({k: v for k, v in args.items() if not k.startswith("fc7")}, auxs)
    mod.forward(mx.io.DataBatch([batch]), is_train=False)
    return mod.get_outputs()[0].asnumpy()
