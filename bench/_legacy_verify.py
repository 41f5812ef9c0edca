"""The baseline of ``bench/verify_command.py``: verification done the way the 2018 ``verification.py`` did it.

Written here from the 2018 procedure (no 2018 code is copied): the ``.bin`` unpickled and every
image decoded with ``mx.image.imdecode`` into two NDArrays (originals and mirrors); the
checkpoint's graph as saved, cut at ``fc1``, bound in an ``mx.mod.Module`` at the batch size;
both arrays forwarded batch by batch (the last batch re-uses a full window); then the 2018
evaluation twice, without and with the flip: 10-fold accuracy over 400 Euclidean thresholds
(0 to 4 step 0.01) and the validation rate at FAR 1e-3 over 4,000 thresholds (step 0.001,
interpolated; SciPy is imported as 2018 did, for its start-up cost). Prints ``[target]XNorm``,
``[target]Accuracy`` and ``[target]Accuracy-Flip`` as the 2018 script did.

    python bench/_legacy_verify.py --model PREFIX,EPOCH --data-dir DIR --target lfw [--batch-size 32]
"""
import argparse
import os
import pickle
import sys

import mxnet as mx
import numpy as np
import scipy.interpolate  # noqa: F401  (imported by the 2018 script)
import sklearn.preprocessing


def load_bin(path, image_size):
    with open(path, "rb") as stream:
        bins, issame = pickle.load(stream, encoding="bytes")
    count = len(issame) * 2
    data = [mx.nd.empty((count, 3) + image_size) for _ in range(2)]
    for i in range(count):
        img = mx.image.imdecode(bins[i])
        img = mx.nd.transpose(img, axes=(2, 0, 1))
        data[0][i][:] = img
        data[1][i][:] = mx.nd.flip(img, axis=2)
    return data, np.asarray(issame, dtype=bool)


def folds(num, nfolds):
    """Contiguous folds, the first ``num % nfolds`` one longer (sklearn's unshuffled KFold)."""
    sizes = np.full(nfolds, num // nfolds)
    sizes[:num % nfolds] += 1
    start = 0
    for size in sizes:
        test = np.arange(start, start + size)
        yield np.setdiff1d(np.arange(num), test), test
        start += size


def accuracy_at(threshold, dist, same):
    predict = dist < threshold
    tp = np.sum(predict & same)
    tn = np.sum(~predict & ~same)
    return float(tp + tn) / dist.size


def val_far(threshold, dist, same):
    predict = dist < threshold
    accept, false_accept = np.sum(predict & same), np.sum(predict & ~same)
    n_same, n_diff = np.sum(same), np.sum(~same)
    return (accept / n_same if n_same else 0.0), (false_accept / n_diff if n_diff else 0.0)


def evaluate(embeddings, same, nfolds=10):
    dist = np.sum(np.square(embeddings[0::2] - embeddings[1::2]), 1)
    roc_thresholds, val_thresholds = np.arange(0, 4, 0.01), np.arange(0, 4, 0.001)
    accuracy, val = [], []
    for train, test in folds(len(same), nfolds):
        best = max(roc_thresholds, key=lambda t: accuracy_at(t, dist[train], same[train]))
        accuracy.append(accuracy_at(best, dist[test], same[test]))
        far_train = np.array([val_far(t, dist[train], same[train])[1] for t in val_thresholds])
        # 2018 interpolated with interp1d(kind="slinear"), which today's SciPy refuses on repeated FARs:
        # the same straight-line interpolation over the first threshold of each distinct FAR.
        far_values, first = np.unique(far_train, return_index=True)
        threshold = np.interp(1e-3, far_values, val_thresholds[first]) if far_train.max() >= 1e-3 else 0.0
        val.append(val_far(threshold, dist[test], same[test])[0])
    return np.mean(accuracy), np.std(accuracy), np.mean(val)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--target", default="lfw")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--nfolds", type=int, default=10)
    args = parser.parse_args()
    prefix, epoch = args.model.rsplit(",", 1)
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, int(epoch))
    sym = sym.get_internals()["fc1_output"]
    model = mx.mod.Module(symbol=sym, context=mx.cpu(), label_names=None)
    model.bind(data_shapes=[("data", (args.batch_size, 3, 112, 112))])
    model.set_params(arg_params, aux_params)
    for target in args.target.split(","):
        data, same = load_bin(os.path.join(args.data_dir, f"{target}.bin"), (112, 112))
        outs = []
        for array in data:
            emb = np.zeros((array.shape[0], 0))
            for begin in range(0, array.shape[0], args.batch_size):
                end = min(begin + args.batch_size, array.shape[0])
                window = mx.nd.slice_axis(array, axis=0, begin=end - args.batch_size, end=end)
                model.forward(mx.io.DataBatch(data=(window,)), is_train=False)
                out = model.get_outputs()[0].asnumpy()
                if emb.shape[1] == 0:
                    emb = np.zeros((array.shape[0], out.shape[1]))
                emb[begin:end] = out[args.batch_size - (end - begin):]
            outs.append(emb)
        xnorm = np.mean([np.linalg.norm(row) for emb in outs for row in emb])
        acc1, std1, _ = evaluate(sklearn.preprocessing.normalize(outs[0]), same, args.nfolds)
        acc2, std2, _ = evaluate(sklearn.preprocessing.normalize(outs[0] + outs[1]), same, args.nfolds)
        print(f"[{target}]XNorm: {xnorm:f}")
        print(f"[{target}]Accuracy: {acc1:1.5f}+-{std1:1.5f}")
        print(f"[{target}]Accuracy-Flip: {acc2:1.5f}+-{std2:1.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
