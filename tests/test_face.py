"""``insightgluon face verify`` / ``search`` on tiny synthetic faces, with ONNX and MXNet models."""
import os

import cv2
import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from insightgluon.cli import main  # noqa: E402
from insightgluon.errors import ConfigError, DataFormatError  # noqa: E402
from insightgluon.export import export_onnx  # noqa: E402
from insightgluon.export.deploy import save_checkpoint  # noqa: E402
from insightgluon.face.search import FaceCropper, FaceModel, Gallery, cosine, gallery_files  # noqa: E402

SIZE = 112


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A small random embedding network as checkpoint and as ONNX (threshold 0.9 stored)."""
    root = tmp_path_factory.mktemp("model")
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Convolution(x, num_filter=8, kernel=(5, 5), stride=(4, 4), name="conv0")
    x = mx.sym.LeakyReLU(x, act_type="prelu", name="relu0")
    out = mx.sym.BatchNorm(mx.sym.FullyConnected(x, num_hidden=32, name="pre_fc1"), name="fc1")
    rng = np.random.default_rng(0)
    args, _, auxs = out.infer_shape(data=(1, 3, SIZE, SIZE))
    params = {k: mx.nd.array(rng.normal(0, 0.05, s)) for k, s in zip(out.list_arguments(), args)
              if k != "data"}
    params.update({k: (mx.nd.ones if k.endswith("var") else mx.nd.zeros)(s)
                   for k, s in zip(out.list_auxiliary_states(), auxs)})
    prefix = str(root / "net")
    save_checkpoint(prefix, 1, out, params)
    onnx_path = str(root / "net.onnx")
    export_onnx(prefix, 1, onnx_path, metadata={"threshold_cos": 0.9})
    return f"{prefix},1", onnx_path


def face(seed):
    """A smooth random 'face': low-frequency noise, so small pixel noise keeps it close."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3)).astype(np.float32)
    return cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def write(path, rgb, noise_seed=None):
    if noise_seed is not None:
        rgb = rgb + np.random.default_rng(noise_seed).normal(0, 4, rgb.shape)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb.clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.fixture
def gallery(tmp_path):
    root = tmp_path / "gallery"
    for k, name in enumerate(["alice", "bob", "carol"]):
        for j in range(2):
            write(str(root / name / f"{j}.png"), face(k), noise_seed=10 * k + j)
    (root / "notes.txt").write_text("not an identity folder")
    return str(root)


def test_verify_same_and_different(models, tmp_path, capsys):
    spec, onnx_path = models
    a = write(str(tmp_path / "a.png"), face(1), 1)
    a2 = write(str(tmp_path / "a2.png"), face(1), 2)
    b = write(str(tmp_path / "b.png"), face(2), 3)
    assert main(["face", "verify", a, a2, "--model", onnx_path, "--aligned"]) == 0
    same = capsys.readouterr().out
    assert "threshold 0.9000  same" in same
    assert main(["face", "verify", a, b, "--model", onnx_path, "--aligned"]) == 0
    assert "different" in capsys.readouterr().out
    # The checkpoint has no stored threshold: similarity only, unless one is given.
    assert main(["face", "verify", a, a2, "--model", spec, "--aligned"]) == 0
    text = capsys.readouterr().out
    assert "no threshold" in text
    assert float(text.split()[1]) == pytest.approx(float(same.split()[1]), abs=1e-4)
    assert main(["face", "verify", a, b, "--model", spec, "--aligned", "--threshold", "-1"]) == 0
    assert "same" in capsys.readouterr().out


def test_onnx_and_mxnet_embed_alike(models):
    spec, onnx_path = models
    crops = np.stack([face(s).astype(np.uint8) for s in range(3)])
    onnx_model, mx_model = FaceModel.load(onnx_path), FaceModel.load(spec)
    assert onnx_model.threshold == 0.9 and mx_model.threshold is None
    assert onnx_model.image_size == (SIZE, SIZE)
    got, expected = onnx_model.embed(crops), mx_model.embed(crops)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosine(got[0], got[0]) == pytest.approx(1.0)


def test_search_ranks_and_caches(models, gallery, tmp_path, capsys):
    spec, onnx_path = models
    probe = write(str(tmp_path / "probe.png"), face(1), 99)
    assert main(["face", "search", "--gallery", gallery, probe, "--model", onnx_path,
                 "--aligned", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[1].split()[2] == "bob" and lines[1].endswith("match")
    assert os.path.isfile(os.path.join(gallery, ".insightgluon-embeddings.npz"))
    model = FaceModel.load(onnx_path)
    cropper = FaceCropper(model.image_size, aligned=True)
    assert Gallery(gallery, model, cropper).embedded_now == 0
    write(os.path.join(gallery, "carol", "0.png"), face(1), 5)
    again = Gallery(gallery, model, cropper)
    assert again.embedded_now == 1
    probe_emb = model.embed(cropper(probe)[None])[0]
    top = again.search(probe_emb, top_k=5)
    assert [m.identity for m in top][:1] in (["bob"], ["carol"]) and len(top) == 3
    assert top[0].score >= top[1].score >= top[2].score
    # Another model must not reuse these embeddings.
    assert Gallery(gallery, FaceModel.load(spec), cropper).embedded_now == 6


def test_bad_inputs(models, gallery, tmp_path):
    spec, onnx_path = models
    big = write(str(tmp_path / "big.png"), cv2.resize(face(1), (120, 120)))
    small = write(str(tmp_path / "ok.png"), face(1))
    model = FaceModel.load(onnx_path)
    with pytest.raises(DataFormatError, match="big.png: aligned input must be 112x112"):
        FaceCropper(model.image_size, aligned=True)(big)
    with pytest.raises(DataFormatError, match="nope.png: cannot read image"):
        FaceCropper(model.image_size, aligned=True)(str(tmp_path / "nope.png"))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="junk.jpg: image data does not decode"):
        FaceCropper(model.image_size, aligned=True)(str(tmp_path / "junk.jpg"))
    os.makedirs(tmp_path / "empty" / "dave")
    with pytest.raises(DataFormatError, match="empty: no gallery images"):
        Gallery(str(tmp_path / "empty"), model, FaceCropper(model.image_size, True))
    g = Gallery(gallery, model, FaceCropper(model.image_size, True), cache=False)
    with pytest.raises(ConfigError, match="top-k"):
        g.search(g.embeddings[0], top_k=0)
    assert main(["face", "verify", big, small, "--model", onnx_path, "--aligned"]) == 2
    assert main(["face", "verify", small, small, "--model", onnx_path, "--threshold", "2"]) == 2
    assert main(["face", "verify", small, small, "--model", str(tmp_path / "x.onnx")]) == 2
    assert main(["face", "search", "--gallery", str(tmp_path / "none"), small,
                 "--model", spec, "--aligned"]) == 2


@pytest.mark.slow
def test_verify_detects_and_aligns_a_photo(models, tmp_path, capsys):
    skdata = pytest.importorskip("skimage.data")
    pytest.importorskip("insightgluon.align.mtcnn")
    photo = write(str(tmp_path / "astronaut.png"), skdata.astronaut().astype(np.float32))
    _, onnx_path = models
    crop = FaceCropper((SIZE, SIZE))(photo)
    assert crop.shape == (SIZE, SIZE, 3) and crop.std() > 10
    assert main(["face", "verify", photo, photo, "--model", onnx_path]) == 0
    assert "similarity 1.0000" in capsys.readouterr().out
    blank = write(str(tmp_path / "blank.png"), np.full((200, 200, 3), 128, np.float32))
    with pytest.raises(DataFormatError, match="blank.png: no face detected"):
        FaceCropper((SIZE, SIZE))(blank)


def test_flat_gallery_names_and_identity_scores(models, tmp_path):
    _, onnx_path = models
    flat = tmp_path / "flat"
    os.makedirs(flat / "carol")
    write(str(flat / "alice.png"), face(0), 1)
    write(str(flat / "alice-2.png"), face(0), 2)
    write(str(flat / "bob-smith.png"), face(1), 3)
    write(str(flat / "carol" / "x.png"), face(2), 4)
    assert gallery_files(str(flat)) == [("alice", "alice-2.png"), ("alice", "alice.png"),
                                        ("bob-smith", "bob-smith.png"), ("carol", os.path.join("carol", "x.png"))]
    model = FaceModel.load(onnx_path)
    cropper = FaceCropper(model.image_size, aligned=True)
    gallery = Gallery(str(flat), model, cropper, cache=False)
    probes = model.embed(np.stack([cropper(str(flat / "alice.png")), cropper(str(flat / "carol" / "x.png"))]))
    names, scores = gallery.identity_scores(probes)
    assert names == ["alice", "bob-smith", "carol"] and scores.shape == (2, 3)
    per_image = probes @ gallery.embeddings.T  # an identity scores its best photo
    np.testing.assert_allclose(scores[:, 0], per_image[:, :2].max(axis=1), rtol=1e-6)
    assert scores[0].argmax() == 0 and scores[1].argmax() == 2


def test_a_gallery_photo_without_a_face_is_left_out_with_a_warning(models, tmp_path, caplog):
    _, onnx_path = models
    folder = tmp_path / "people"
    os.makedirs(folder)
    write(str(folder / "alice.png"), face(0), 1)
    write(str(folder / "wall.png"), np.full((SIZE, SIZE, 3), 128, np.uint8))
    model = FaceModel.load(onnx_path)

    class PlainImagesHaveNoFace(FaceCropper):  # a stand-in for MTCNN on these tiny test faces
        def _align(self, rgb, path):
            if rgb.std() == 0:
                raise DataFormatError(f"{path}: no face detected (use --aligned for pre-aligned crops)")
            return rgb

    cropper = PlainImagesHaveNoFace(model.image_size)
    with pytest.raises(DataFormatError, match="wall.png: no face detected"):
        Gallery(str(folder), model, cropper, cache=False)
    gallery = Gallery(str(folder), model, cropper, skip_faceless=True)
    assert gallery.identities == ["alice"] and gallery.embeddings.shape[0] == 1
    assert "wall.png: no face detected; left out of the gallery" in caplog.text
    caplog.clear()
    again = Gallery(str(folder), model, cropper, skip_faceless=True)  # the cache remembers the faceless photo
    assert again.embedded_now == 0 and again.identities == ["alice"]
    os.remove(folder / "alice.png")
    with pytest.raises(DataFormatError, match="people: no gallery photo has a face"):
        Gallery(str(folder), model, cropper, skip_faceless=True, cache=False)
