"""``insightgluon ijb`` on a small IJB-shaped folder: known answers, resume after a kill, bad input."""
import os

import cv2
import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from insightgluon.cli import main  # noqa: E402
from insightgluon.eval import ijb  # noqa: E402

SUBJECTS = 8


def make_ijb(root):
    """IJBC/loose_crop (synthetic faces) and IJBC/meta: 8 subjects, 2 templates each, several media."""
    from insightgluon.align.transform import REFERENCE_112
    from insightgluon.data.image import decode_jpeg
    from insightgluon.data.synthetic import render_identity

    rng = np.random.default_rng(3)
    crops, meta = os.path.join(root, "IJBC", "loose_crop"), os.path.join(root, "IJBC", "meta")
    os.makedirs(crops)
    os.makedirs(meta)
    tid_mid, points, n = [], [], 0
    for s in range(SUBJECTS):
        media_of = [(10 * s + 1, 100 * s + 1)] * 3 + [(10 * s + 1, 100 * s + 2)] + [(10 * s + 2, 100 * s + 3)] * 2
        for k, (tid, mid) in enumerate(media_of):
            n += 1
            rgb = decode_jpeg(render_identity(0, s + 1, 6, 112)[k])
            cv2.imwrite(os.path.join(crops, f"{n}.jpg"), rgb[:, :, ::-1])
            marks = REFERENCE_112 + rng.normal(0, 1.0, (5, 2))
            tid_mid.append(f"{n}.jpg {tid} {mid}")
            points.append(f"{n}.jpg " + " ".join(f"{v:.3f}" for v in marks.ravel()) + f" {rng.uniform(0.5, 1):.3f}")
    templates = [10 * s + t for s in range(SUBJECTS) for t in (1, 2)]
    pairs = [f"{a} {b} {int(a // 10 == b // 10)}" for i, a in enumerate(templates) for b in templates[i + 1:]]
    for name, lines in (("ijbc_face_tid_mid.txt", tid_mid), ("ijbc_name_5pts_score.txt", points),
                        ("ijbc_template_pair_label.txt", pairs),
                        ("ijbc_1N_gallery_G1.csv", ["TEMPLATE_ID,SUBJECT_ID"] + [f"{10 * s + 1},{s}" for s in range(4)]),
                        ("ijbc_1N_gallery_G2.csv", ["TEMPLATE_ID,SUBJECT_ID"] + [f"{10 * s + 1},{s}" for s in range(4, 8)]),
                        ("ijbc_1N_probe_mixed.csv", ["TEMPLATE_ID,SUBJECT_ID"] + [f"{10 * s + 2},{s}" for s in range(8)])):
        with open(os.path.join(meta, name), "w") as stream:
            stream.write("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from insightgluon.export.deploy import save_checkpoint

    root = str(tmp_path_factory.mktemp("ijb"))
    make_ijb(root)
    x = (mx.sym.var("data") - 127.5) * 0.0078125
    x = mx.sym.Pooling(x, kernel=(8, 8), stride=(8, 8), pool_type="avg", name="pool0")
    out = mx.sym.FullyConnected(mx.sym.Flatten(x), num_hidden=32, name="fc1")
    rng = np.random.default_rng(0)
    save_checkpoint(os.path.join(root, "pixels"), 1, out,
                    {"fc1_weight": mx.nd.array(rng.normal(0, 1, (32, 588))), "fc1_bias": mx.nd.zeros(32)})
    return root, os.path.join(root, "pixels") + ",1"


def _reference(root, raw):
    """Every step once more in float64, one template, media and pair at a time."""
    from sklearn.metrics import roc_curve

    files = ijb.layout(root, "IJBC")
    rows = [line.split() for line in open(files.face_tid_mid)]
    scores = np.array([float(line.split()[-1]) for line in open(files.name_5pts_score)])
    tids, mids = np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows])
    half = raw.shape[1] // 2
    feats = (raw[:, :half].astype(np.float64) + raw[:, half:]) * scores[:, None]
    template = {}
    for t in sorted(set(tids)):
        total = sum(feats[(tids == t) & (mids == m)].mean(axis=0) for m in sorted(set(mids[tids == t])))
        template[t] = total / np.linalg.norm(total)
    pairs = np.loadtxt(files.pairs, dtype=np.int64)
    pair_scores = np.array([template[a] @ template[b] for a, b, _ in pairs])
    fpr, tpr, _ = roc_curve(pairs[:, 2], pair_scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    tars = {far: tpr[min(zip(abs(fpr - far), range(len(fpr))))[1]] for far in ijb.FAR_TARGETS}
    gallery = [10 * s + 1 for s in range(SUBJECTS)]
    similarity = np.array([[template[10 * s + 2] @ template[g] for g in gallery] for s in range(SUBJECTS)])
    figures = {"closed-set rank-1": np.mean([similarity[s].argmax() == s for s in range(SUBJECTS)])}
    mated = similarity.diagonal()
    non_mated = sorted((similarity[s, g] for s in range(SUBJECTS) for g in range(SUBJECTS) if g != s), reverse=True)
    threshold = non_mated[int(np.ceil(SUBJECTS * 0.1)) - 1]
    figures["closed-set TPIR@FPIR=1e-01"] = np.mean(mated > threshold)
    half, ranks, tpirs = SUBJECTS // 2, 0, []
    for members in (range(half), range(half, SUBJECTS)):  # G1, G2: each alone
        sub = similarity[:, list(members)]
        mated_rows = [s for s in range(SUBJECTS) if s in members]
        ranks += sum(sub[s].argmax() == s - members[0] for s in mated_rows)
        tops = sorted((sub[s].max() for s in range(SUBJECTS) if s not in members), reverse=True)
        threshold = tops[max(int(len(tops) * 0.1) - 1, 0)]
        tpirs.append(np.mean([sub[s].argmax() == s - members[0] and sub[s, s - members[0]] > threshold
                              for s in mated_rows]))
    figures["open-set rank-1"] = ranks / SUBJECTS
    figures["open-set TPIR@FPIR=1e-01"] = np.mean(tpirs)
    return tars, figures


def test_known_answers_and_saved_features(data, tmp_path, capsys):
    root, model = data
    features = str(tmp_path / "f.npy")
    assert main(["ijb", "--model", model, "--engine", "graph", "--data-root", root, "--features", features,
                 "--batch-size", "7", "--roc", str(tmp_path / "roc.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    raw = np.load(features)
    assert raw.shape == (SUBJECTS * 6, 64) and not os.path.exists(features + ".done")
    tars, figures = _reference(root, raw)
    assert lines[:6] == [f"TAR@FAR={far:.0e}: {100 * tars[far]:.2f}" for far in sorted(tars)]
    printed = dict(line.split(": ") for line in lines[6:])
    for name, value in figures.items():
        assert printed[name] == f"{100 * value:.2f}", name
    assert [line.split(":")[0] for line in lines[6:]] == [
        "closed-set rank-1", "closed-set rank-5", "closed-set rank-10", "closed-set TPIR@FPIR=1e-02",
        "closed-set TPIR@FPIR=1e-01", "open-set rank-1", "open-set rank-5", "open-set rank-10",
        "open-set TPIR@FPIR=1e-02", "open-set TPIR@FPIR=1e-01"]
    assert os.path.getsize(tmp_path / "roc.png") > 1000
    # The saved features alone give the same lines.
    assert main(["ijb", "--features", features, "--data-root", root]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines
    assert main(["ijb", "--features", features, "--data-root", root, "--no-flip", "--no-1n"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 6


def test_a_killed_run_resumes_where_it_stopped(data, tmp_path):
    from insightgluon.engines import load_embedding_model

    root, model = data
    files = ijb.layout(root, "IJBC")
    meta = ijb.read_image_meta(files.face_tid_mid, files.name_5pts_score)
    block = load_embedding_model(model, engine="graph").block
    calls = []

    def dies_at_third_batch(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return block(batch)

    path = str(tmp_path / "f.npy")
    with pytest.raises(KeyboardInterrupt):
        ijb.compute_features(dies_at_third_batch, files.images, meta, path, batch_size=8, progress=False)
    assert open(path + ".done").read() == "16"
    with pytest.raises(Exception, match="incomplete"):
        ijb.load_features(path, len(meta.names))
    rows = []

    def counting(batch):
        rows.append(len(batch) // 2)  # (crops and their mirrors go through together)
        return block(batch)

    resumed = np.array(ijb.compute_features(counting, files.images, meta, path, 8, progress=False))
    assert sum(rows) == len(meta.names) - 16  # only what the killed run had not finished
    fresh = np.array(ijb.compute_features(block, files.images, meta, str(tmp_path / "g.npy"), 8, progress=False))
    np.testing.assert_array_equal(resumed, fresh)
    assert not os.path.exists(path + ".done")


def test_bad_inputs_say_file_and_line(data, tmp_path, caplog):
    import shutil

    root, model = data
    features = str(tmp_path / "good.npy")
    assert main(["ijb", "--model", model, "--engine", "graph", "--data-root", root, "--features", features,
                 "--no-1n"]) == 0
    broken = str(tmp_path / "broken")
    shutil.copytree(root, broken)
    meta = os.path.join(broken, "IJBC", "meta")
    with open(os.path.join(broken, "IJBC", "loose_crop", "5.jpg"), "wb") as stream:
        stream.write(b"not a jpeg")
    with open(os.path.join(meta, "ijbc_template_pair_label.txt"), "a") as stream:
        stream.write("11 999 0\n")
    lines = sum(1 for _ in open(os.path.join(meta, "ijbc_template_pair_label.txt")))
    runs = [
        (["--model", model, "--engine", "graph", "--no-1n"],
         "5.jpg: not a readable image (" + os.path.join(meta, "ijbc_name_5pts_score.txt") + ", line 5)"),
        (["--features", features], f"ijbc_template_pair_label.txt: line {lines}: template 999 has no images"),
        (["--features", str(tmp_path / "none.npy")], "none.npy: not a readable .npy"),
        (["--features", os.path.join(meta, "ijbc_face_tid_mid.txt")], "not a readable .npy"),
        ([], "give --model (to compute image features) or --features"),
    ]
    os.remove(os.path.join(meta, "ijbc_1N_gallery_G2.csv"))
    runs.append((["--features", features, "--data-root", root, "--target", "IJBB"],
                 os.path.join("IJBB", "meta", "ijbb_face_tid_mid.txt") + ": no such IJB meta file"))
    for args, expected in runs:
        caplog.clear()
        argv = ["ijb", *args] + ([] if "--data-root" in args else ["--data-root", broken])
        assert main(argv) == 2, expected
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and expected in errors[0] and "\n" not in errors[0], (expected, errors)
    # 1:N needs its lists: a missing one is named.
    caplog.clear()
    with open(os.path.join(meta, "ijbc_template_pair_label.txt")) as stream:
        kept = stream.readlines()[:-1]
    with open(os.path.join(meta, "ijbc_template_pair_label.txt"), "w") as stream:
        stream.writelines(kept)
    assert main(["ijb", "--features", features, "--data-root", broken]) == 2
    assert "ijbc_1N_gallery_G2.csv: no such IJB meta file" in caplog.text
