"""``insightgluon verify`` end to end on a tiny exported Gluon checkpoint and a tiny .bin."""
import json
import logging
import os

import numpy as np
import pytest

from insightgluon.cli import main as cli_main
from insightgluon.cli.verify import expand_model_spec
from insightgluon.errors import CheckpointError


def export_tiny_model(prefix, epoch=1, emb=8, size=16, seed=0):
    """A 2-layer Gluon block exported as ``prefix-symbol.json``/``prefix-%04d.params``, output ``fc1``."""
    import mxnet as mx
    from mxnet import gluon

    class TinyNet(gluon.HybridBlock):
        def __init__(self):
            super().__init__(prefix="")
            with self.name_scope():
                self.weight = self.params.get("fc1_weight", shape=(emb, 3 * (size // 4) ** 2))
                self.bias = self.params.get("fc1_bias", shape=(emb,))

        def hybrid_forward(self, F, x, weight, bias):
            x = F.Pooling(x, kernel=(4, 4), stride=(4, 4), pool_type="avg", name="pool0")
            return F.FullyConnected(x, weight, bias, num_hidden=emb, name="fc1")

    mx.random.seed(seed)
    net = TinyNet()
    net.initialize(mx.init.Normal(0.1))
    net.hybridize()
    net(mx.nd.zeros((1, 3, size, size)))
    net.export(str(prefix), epoch)
    return str(prefix)


def write_tiny_bin(path, pairs=20, size=16, seed=0):
    """Same pairs are the same JPEG twice, different pairs two random images."""
    import cv2

    from insightgluon.data.bin import save_bin

    rng = np.random.default_rng(seed)
    issame = np.arange(pairs) % 2 == 0
    bins = []
    for same in issame:
        # 4x4 blocks survive the model's 4x4 average pooling and JPEG
        blocks = rng.integers(0, 256, size=(2, size // 4, size // 4, 3), dtype=np.uint8)
        imgs = blocks.repeat(4, axis=1).repeat(4, axis=2)
        jpegs = [cv2.imencode(".jpg", im)[1].tobytes() for im in imgs]
        bins += [jpegs[0], jpegs[0] if same else jpegs[1]]
    save_bin(str(path), bins, issame)
    return issame


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    export_tiny_model(root / "tiny", 1, seed=1)
    export_tiny_model(root / "tiny", 2, seed=2)
    write_tiny_bin(root / "lfw.bin")
    write_tiny_bin(root / "agedb_30.bin", pairs=30, seed=1)
    return root


def test_verify_cli_prints_legacy_lines_json_and_pngs(workspace, capsys):
    root = workspace
    code = cli_main(["verify", "--model", f"{root / 'tiny'},1|2", "--data-dir", str(root),
                     "--target", "lfw,agedb_30", "--image-size", "16,16", "--batch-size", "7",
                     "--json", str(root / "out.json"), "--roc-dir", str(root / "roc")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("[lfw]XNorm: ") == 2 and out.count("[lfw]Accuracy-Flip: 1.00000+-0.00000") == 2
    assert "Max of [lfw] is 1.00000" in out and "Max of [agedb_30] is 1.00000" in out
    assert "[agedb_30]TAR@FAR: 1e-01=1.00000 1e-02=n/a 1e-03=n/a" in out
    assert f"[lfw]model: {root / 'tiny'},2" in out
    report = json.loads((root / "out.json").read_text())
    assert [m["epoch"] for m in report["models"]] == [1, 2]
    lfw = report["models"][0]["results"]["lfw"]
    assert lfw["accuracy"] == 1.0 and lfw["auc"] == 1.0 and lfw["num_pairs"] == 20 and lfw["xnorm"] > 0
    assert report["max"] == {"lfw": 1.0, "agedb_30": 1.0}
    pngs = sorted(os.listdir(root / "roc"))
    assert pngs == ["agedb_30_roc.png", "agedb_30_tiny-0001_worst.png", "agedb_30_tiny-0002_worst.png",
                    "lfw_roc.png", "lfw_tiny-0001_worst.png", "lfw_tiny-0002_worst.png"]
    for name in pngs:
        assert (root / "roc" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verify_cli_bad_inputs_fail_with_one_line(workspace, caplog):
    root = workspace
    caplog.set_level(logging.ERROR)
    base = ["verify", "--model", f"{root / 'tiny'},1", "--data-dir", str(root), "--image-size", "16,16"]
    assert cli_main(base + ["--target", "nope"]) == 2
    assert f"{root / 'nope.bin'}: no such verification set" in caplog.text
    assert cli_main(base + ["--target", "lfw", "--layer", "fc9"]) == 2
    assert "no layer 'fc9' in the graph" in caplog.text
    assert cli_main(base + ["--image-size", "16"]) == 2
    assert "--image-size '16': expected H,W" in caplog.text
    assert cli_main(base + ["--ctx", "tpu:0"]) == 2
    assert "--ctx 'tpu:0': expected cpu" in caplog.text
    (root / "bad.bin").write_bytes(b"not a pickle")
    assert cli_main(base + ["--target", "bad"]) == 2
    assert f"{root / 'bad.bin'}: not a .bin pickle" in caplog.text


def test_expand_model_spec(workspace):
    p = str(workspace / "tiny")
    assert expand_model_spec(f"{p},1|2|/x/y,5") == [(p, 1), (p, 2), ("/x/y", 5)]
    assert expand_model_spec(p) == [(p, 1), (p, 2)]
    with pytest.raises(CheckpointError, match="no checkpoint epochs found"):
        expand_model_spec(p + "zz")
    with pytest.raises(CheckpointError, match="has no prefix"):
        expand_model_spec("3|p,1")
