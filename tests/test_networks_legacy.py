"""2018 checkpoints load into our networks and give the same embeddings; exports load back.

The legacy graphs come from ``_legacy_graphs`` (written with ``mx.sym``, independently of the package).
"""
import mxnet as mx
import numpy as np
import pytest

from _legacy_graphs import legacy_embedding, random_checkpoint, legacy_mobilefacenet, legacy_resnet

from insightgluon.errors import CheckpointError
from insightgluon.model_io import load_symbol_block
from insightgluon.networks import get_network, load_legacy_params, read_legacy_params

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
    args, auxs = random_checkpoint(sym, str(tmp_path / "model"), batch)
    params_file = str(tmp_path / "model-0001.params")

    net = get_network(name, emb_size=32, **options)
    saved = set(read_legacy_params(params_file))
    ours = set(net.collect_params().keys())
    assert ours == saved - {"fc7_weight"}, (sorted(ours - saved), sorted(saved - ours))
    assert load_legacy_params(net, params_file) == []
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    got = net(batch).asnumpy()
    want = legacy_embedding(sym, args, auxs, batch)
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
    np.testing.assert_allclose(legacy_embedding(sym, args, auxs, batch), want, atol=1e-5)

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
