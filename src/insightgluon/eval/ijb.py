"""IJB-B / IJB-C 1:1 template verification, computed as InsightFace computes it.

The steps are those of InsightFace's ``ijb_11.py`` and arcface_torch's ``eval_ijbc.py``:

1. Image features: the network's embedding of the aligned crop plus that of its mirror (``flip``),
   optionally L2-normalised per image (``normalise``), optionally times the detector's score
   (``detector_score``). The defaults (flip on, no normalisation, score on) are InsightFace's.
2. Template features: for each template, each of its media contributes the mean of its images'
   features (an image alone contributes itself); the template is the sum over its media, then
   L2-normalised.
3. Pair score: the dot product of the two template features.
4. TAR at each FAR: sklearn's ``roc_curve`` (intermediate points dropped, its default), both
   arrays reversed, and the TPR at the FPR nearest the target; among equally near FPRs the first
   of the reversed arrays wins (``min`` over ``(|fpr - target|, index)``).

Pairs are scored in chunks, so IJB-C's 15.7 million pairs never hold more than a chunk of
gathered template rows at once. The meta-file readers name the file and line of any bad row.
"""
import os
from typing import Dict, Iterable, List, NamedTuple, Sequence, Tuple

import numpy as np

from insightgluon.errors import DataFormatError

#: The FARs InsightFace reports.
FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


class ImageMeta(NamedTuple):
    """Per image, in meta order: file name, template id, media id, five landmarks and detector score."""

    names: List[str]
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    scores: np.ndarray


def _require(path: str) -> str:
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: no such IJB meta file")
    return path


def _rows(path: str, columns: int, what: str) -> Iterable[Tuple[int, List[str]]]:
    with open(_require(path), encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise DataFormatError(f"{path}: line {number}: {len(fields)} columns, expected {columns} ({what})")
            yield number, fields


def _numbers(path: str, number: int, fields: Sequence[str], kind=int) -> list:
    try:
        return [kind(v) for v in fields]
    except ValueError:
        raise DataFormatError(f"{path}: line {number}: not a number in {' '.join(fields)!r}") from None


def read_image_meta(face_tid_mid: str, name_5pts_score: str) -> ImageMeta:
    """``*_face_tid_mid.txt`` (``name tid mid``) and ``*_name_5pts_score.txt`` (``name x1 y1 ... x5 y5
    score``), which must list the same images in the same order."""
    names, ids = [], []
    for number, fields in _rows(face_tid_mid, 3, "name tid mid"):
        names.append(fields[0])
        ids.append(_numbers(face_tid_mid, number, fields[1:]))
    points, scores = [], []
    for k, (number, fields) in enumerate(_rows(name_5pts_score, 12, "name, 5 points, score")):
        if k >= len(names) or fields[0] != names[k]:
            expected = names[k] if k < len(names) else "no more images"
            raise DataFormatError(f"{name_5pts_score}: line {number}: image {fields[0]}, expected {expected} "
                                  f"(the order of {os.path.basename(face_tid_mid)})")
        values = _numbers(name_5pts_score, number, fields[1:], float)
        points.append(values[:10])
        scores.append(values[10])
    if len(points) != len(names):
        raise DataFormatError(f"{name_5pts_score}: {len(points)} images, {face_tid_mid} lists {len(names)}")
    if not names:
        raise DataFormatError(f"{face_tid_mid}: no images")
    ids_array = np.asarray(ids, dtype=np.int64).reshape(-1, 2)
    return ImageMeta(names, ids_array[:, 0], ids_array[:, 1],
                     np.asarray(points, dtype=np.float32).reshape(-1, 5, 2), np.asarray(scores, dtype=np.float32))


def read_template_pairs(path: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``*_template_pair_label.txt``: ``(t1, t2, label)`` arrays (label 1 for a genuine pair)."""
    _require(path)
    try:  # NumPy's C reader: IJB-C's 15.7 million lines in seconds
        pairs = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError:
        pairs = None
    if pairs is None or pairs.shape[1] != 3:
        # Read line by line to name the first bad line.
        rows = [_numbers(path, number, fields) for number, fields in _rows(path, 3, "tid1 tid2 label")]
        pairs = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    if not len(pairs):
        raise DataFormatError(f"{path}: no pairs")
    return pairs[:, 0], pairs[:, 1], pairs[:, 2]


def image_features(raw: np.ndarray, detector_scores: np.ndarray, flip: bool = True, normalise: bool = False,
                   detector_score: bool = True) -> np.ndarray:
    """Step 1. ``raw`` is ``(N, 2D)``: each row the crop's embedding then its mirror's."""
    raw = np.asarray(raw, dtype=np.float32)
    half = raw.shape[1] // 2
    feats = raw[:, :half] + raw[:, half:] if flip else raw[:, :half].copy()
    if normalise:
        feats /= np.sqrt(np.sum(feats ** 2, -1, keepdims=True))
    if detector_score:
        feats *= np.asarray(detector_scores, dtype=np.float32)[:, None]
    return feats


def template_features(feats: np.ndarray, templates: np.ndarray, medias: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Step 2: ``(template ids sorted, (T, D) L2-normalised template features)``.

    One sparse product, ``(templates x images) @ features``, whose weights are 1 / (images of the
    image's media): the sum over media of each media's mean, without a sorted copy of the features.
    """
    from scipy import sparse

    templates, medias = np.asarray(templates), np.asarray(medias)
    ids, row = np.unique(templates, return_inverse=True)
    _, media, media_size = np.unique(np.stack([templates, medias]), axis=1, return_inverse=True,
                                     return_counts=True)
    weights = 1.0 / media_size[media]
    matrix = sparse.csr_matrix((weights, (row, np.arange(len(templates)))), shape=(len(ids), len(templates)))
    summed = np.asarray(matrix @ np.asarray(feats, dtype=np.float64))
    norms = np.sqrt(np.sum(summed ** 2, axis=1, keepdims=True))
    return ids, (summed / np.maximum(norms, 1e-12)).astype(np.float32)


def pair_scores(ids: np.ndarray, template_feats: np.ndarray, t1: np.ndarray, t2: np.ndarray,
                chunk: int = 100_000, source: str = "pairs") -> np.ndarray:
    """Step 3, in chunks of ``chunk`` pairs; a pair naming a template without images is refused."""
    rows1, rows2 = np.searchsorted(ids, t1), np.searchsorted(ids, t2)
    for t, rows in ((t1, rows1), (t2, rows2)):
        bad = (rows >= len(ids)) | (ids[np.minimum(rows, len(ids) - 1)] != t)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{source}: line {k + 1}: template {int(t[k])} has no images")
    out = np.empty(len(t1), dtype=np.float32)
    for begin in range(0, len(t1), chunk):
        end = min(begin + chunk, len(t1))
        out[begin:end] = np.einsum("ij,ij->i", template_feats[rows1[begin:end]], template_feats[rows2[begin:end]])
    return out


def tar_at_far(labels: np.ndarray, scores: np.ndarray, targets: Sequence[float] = FAR_TARGETS
               ) -> Dict[float, float]:
    """Step 4: ``{far: tar}`` by InsightFace's nearest-FPR rule (no interpolation)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores))
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for target in targets:
        gaps = np.abs(fpr - target)
        out[target] = float(tpr[int(np.flatnonzero(gaps == gaps.min())[0])])
    return out


def tar_lines(tars: Dict[float, float]) -> List[str]:
    """``TAR@FAR=1e-04: 96.28`` per FAR, in percent with two decimals as InsightFace prints them."""
    return [f"TAR@FAR={far:.0e}: {100 * tar:.2f}" for far, tar in sorted(tars.items())]


# --- 1:N identification --------------------------------------------------------------------------

#: FPIRs at which both 1:N definitions report the TPIR.
FPIR_TARGETS = (1e-2, 1e-1)


def read_subject_list(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """A 1:N ``*.csv`` (a header, then ``template id, subject id, ...``): ``(templates, subjects)``."""
    rows = []
    with open(_require(path), encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, 1):
            if number == 1 or not line.strip():
                continue
            fields = line.strip().split(",")
            if len(fields) < 2:
                raise DataFormatError(f"{path}: line {number}: {len(fields)} column, expected a template and a subject")
            rows.append(_numbers(path, number, fields[:2]))
    if not rows:
        raise DataFormatError(f"{path}: no templates")
    values = np.asarray(rows, dtype=np.int64)
    return values[:, 0], values[:, 1]


def select_templates(ids: np.ndarray, feats: np.ndarray, templates: np.ndarray, subjects: np.ndarray,
                     source: str) -> Tuple[np.ndarray, np.ndarray]:
    """Features and subject ids of the distinct ``templates`` of a 1:N list, sorted by template id."""
    chosen, first = np.unique(templates, return_index=True)
    rows = np.searchsorted(ids, chosen)
    bad = (rows >= len(ids)) | (ids[np.minimum(rows, len(ids) - 1)] != chosen)
    if bad.any():
        raise DataFormatError(f"{source}: template {int(chosen[np.flatnonzero(bad)[0]])} has no images")
    return feats[rows], subjects[first]


def closed_set(probe_feats: np.ndarray, probe_subjects: np.ndarray, gallery_feats: np.ndarray,
               gallery_subjects: np.ndarray, fpirs: Sequence[float] = FPIR_TARGETS) -> Dict[str, float]:
    """The 2019 closed-set figures of InsightFace's ``ijb_1n.py`` (gallery G1 and G2 together).

    Every probe's subject must have exactly one gallery template. Rank-k counts probes whose mate
    is among the k most similar; TPIR at FPIR ``f``: the share of probes whose mate scores above the
    ``ceil(probes x f)``-th largest of all non-mated scores.
    """
    mates = []
    for subject in probe_subjects:
        found = np.flatnonzero(gallery_subjects == subject)
        if len(found) != 1:
            raise DataFormatError(f"probe subject {int(subject)}: {len(found)} gallery templates, expected 1")
        mates.append(found[0])
    mates = np.asarray(mates)
    similarity = probe_feats @ gallery_feats.T
    order = np.argsort(-similarity, axis=1)
    out = {f"rank-{k}": float(np.mean((order[:, :k] == mates[:, None]).any(axis=1))) for k in (1, 5, 10)}
    rows = np.arange(len(mates))
    mated = similarity[rows, mates].copy()
    similarity[rows, mates] = -np.inf
    non_mated = similarity[np.isfinite(similarity)]
    for fpir in fpirs:
        k = int(np.ceil(len(mates) * fpir))
        threshold = np.partition(non_mated, len(non_mated) - k)[len(non_mated) - k]  # the k-th largest
        out[f"TPIR@FPIR={fpir:.0e}"] = float(np.sum(mated > threshold) / len(mates))
    return out


def open_set(probe_feats: np.ndarray, probe_subjects: np.ndarray, gallery_feats: np.ndarray,
             gallery_subjects: np.ndarray, fpirs: Sequence[float] = FPIR_TARGETS) -> Dict[str, float]:
    """One gallery of the open-set figures of InsightFace's ``ijb_evals.py``.

    A probe whose subject has a template in the gallery is a mated search, any other a non-mated
    one. Rank-k counts mated searches found among the k most similar (as a count, to be divided by
    all probes of both galleries); TPIR at FPIR ``f``: mated searches whose mate is the most similar
    and scores above the non-mated searches' top scores' ``max(int(n x f) - 1, 0)``-th largest.
    """
    similarity = probe_feats @ gallery_feats.T
    mated_rows = np.flatnonzero(np.isin(probe_subjects, gallery_subjects))
    out = {}
    mates = np.array([np.flatnonzero(gallery_subjects == probe_subjects[row])[0] for row in mated_rows], dtype=int)
    order = np.argsort(similarity[mated_rows], axis=1)[:, ::-1]
    for k in (1, 5, 10):
        out[f"rank-{k} count"] = float(np.sum((order[:, :k] == mates[:, None]).any(axis=1)))
    mated = similarity[mated_rows, mates]
    others = similarity[mated_rows].copy()
    others[np.arange(len(mates)), mates] = -np.inf
    correct = mated > others.max(axis=1)
    if len(mated_rows) in (0, len(probe_subjects)):
        raise DataFormatError("open-set 1:N needs mated and non-mated probes for each gallery")
    non_mated_top = np.sort(np.delete(similarity, mated_rows, axis=0).max(axis=1))[::-1]
    for fpir in fpirs:
        threshold = non_mated_top[max(int(len(non_mated_top) * fpir) - 1, 0)]
        out[f"TPIR@FPIR={fpir:.0e}"] = float(np.sum(correct & (mated > threshold)) / len(mates))
    return out


# --- the data folder, image features on disk, and the whole evaluation ------------------------------

#: ``--target`` -> (folder, file prefix, 1:N gallery names)
TARGETS = {"IJBC": ("IJBC", "ijbc", ("G1", "G2")), "IJBB": ("IJBB", "ijbb", ("S1", "S2"))}


class Layout(NamedTuple):
    """The files of one IJB target under ``ROOT``."""

    images: str
    face_tid_mid: str
    name_5pts_score: str
    pairs: str
    galleries: Tuple[str, str]
    probes: str


def layout(root: str, target: str) -> Layout:
    if target not in TARGETS:
        raise DataFormatError(f"--target {target}: choose one of {', '.join(TARGETS)}")
    folder, prefix, galleries = TARGETS[target]
    meta = os.path.join(root, folder, "meta")
    return Layout(os.path.join(root, folder, "loose_crop"), os.path.join(meta, f"{prefix}_face_tid_mid.txt"),
                  os.path.join(meta, f"{prefix}_name_5pts_score.txt"),
                  os.path.join(meta, f"{prefix}_template_pair_label.txt"),
                  tuple(os.path.join(meta, f"{prefix}_1N_gallery_{g}.csv") for g in galleries),
                  os.path.join(meta, f"{prefix}_1N_probe_mixed.csv"))


def aligned_crop(images: str, meta: ImageMeta, index: int, source: str) -> np.ndarray:
    """Image ``index`` aligned by its five points to the 112x112 ArcFace template, RGB uint8."""
    import cv2

    from insightgluon.align.transform import align_face

    path = os.path.join(images, meta.names[index])
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else np.zeros(0, np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DataFormatError(f"{path}: {'not a readable image' if data.size else 'missing or empty'} "
                              f"({source}, line {index + 1})")
    return align_face(bgr, meta.landmarks[index])[:, :, ::-1]


def compute_features(model, images: str, meta: ImageMeta, path: str, batch_size: int = 64,
                     source: str = "meta", progress: bool = True) -> np.ndarray:
    """Every image's ``[f(crop), f(mirror)]`` row, written to ``path`` (``.npy``) as it is computed.

    Rows are written batch by batch into the ``.npy`` (a memory map) and ``path + ".done"`` records
    how many are complete, so a killed run resumes at the first batch it had not finished. The
    marker is removed when every row is there. Returns the array (memory-mapped).
    """
    from insightgluon.eval.embed import Embedder
    from insightgluon.progress import Progress

    count = len(meta.names)
    marker = path + ".done"
    done = 0
    if os.path.isfile(path) and os.path.isfile(marker):
        with open(marker) as stream:
            done = int(stream.read().strip() or 0)
        feats = np.load(path, mmap_mode="r+")
        if feats.shape[0] != count:
            raise DataFormatError(f"{path}: {feats.shape[0]} rows, the meta files list {count} images")
    elif os.path.isfile(path):
        return load_features(path, count)
    else:
        feats = None
    embedder = Embedder(model, None, batch_size, flip=True)
    with Progress(total=count, initial=done, desc="ijb features", unit="img", enabled=progress) as bar:
        for begin in range(done, count, batch_size):
            end = min(begin + batch_size, count)
            crops = np.stack([aligned_crop(images, meta, k, source) for k in range(begin, end)])
            raw = embedder.forward(crops)  # (2, n, D): crops, mirrors
            if feats is None:
                feats = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, 2 * raw.shape[2]))
            feats[begin:end] = np.concatenate([raw[0], raw[1]], axis=1)
            feats.flush()
            _write_marker(marker, end)
            bar.update(end - begin)
    os.remove(marker)
    return feats


def _write_marker(marker: str, value: int) -> None:
    tmp = marker + ".tmp"
    with open(tmp, "w") as stream:
        stream.write(str(value))
    os.replace(tmp, marker)


def read_feature_rows(path: str, chunk: int = 65536) -> Iterable[np.ndarray]:
    """The rows of a ``.npy`` of features, ``chunk`` at a time, read (not mapped): memory holds one chunk."""
    with open(path, "rb") as stream:
        version = np.lib.format.read_magic(stream)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(stream) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(stream))
        if fortran or len(shape) != 2:
            raise DataFormatError(f"{path}: expected a C-ordered 2-D array of features, got {shape}")
        for begin in range(0, shape[0], chunk):
            rows = min(chunk, shape[0] - begin)
            block = np.fromfile(stream, dtype=dtype, count=rows * shape[1])
            if block.size != rows * shape[1]:
                raise DataFormatError(f"{path}: ends after {begin + block.size // shape[1]} of {shape[0]} rows")
            yield block.reshape(rows, shape[1])


def load_features(path: str, count: int) -> np.ndarray:
    """Saved image features (``.npy``, one row per image in meta order), memory-mapped."""
    if os.path.isfile(path + ".done"):
        raise DataFormatError(f"{path}: incomplete (a run stopped); give --model to finish it")
    try:
        feats = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DataFormatError(f"{path}: not a readable .npy of features ({err})") from None
    if feats.ndim != 2 or feats.shape[0] != count or feats.shape[1] % 2:
        raise DataFormatError(f"{path}: shape {feats.shape}, expected ({count}, 2 x embedding) rows in meta order")
    return feats


class Results(NamedTuple):
    """What :func:`evaluate` found: TAR per FAR, 1:N figures by name, and the 1:1 scores and labels."""

    tars: Dict[float, float]
    one_to_n: Dict[str, float]
    scores: np.ndarray
    labels: np.ndarray

    def lines(self) -> List[str]:
        return tar_lines(self.tars) + [f"{name}: {100 * value:.2f}" for name, value in self.one_to_n.items()]


def evaluate(files: Layout, meta: ImageMeta, raw: np.ndarray, flip: bool = True, normalise: bool = False,
             detector_score: bool = True, one_to_n: bool = True) -> Results:
    """1:1 TAR at every FAR and, with ``one_to_n``, both 1:N definitions, from image features ``raw``
    (an array, or the path of a ``.npy`` read a chunk at a time)."""
    if isinstance(raw, str):
        feats, begin = None, 0
        for rows in read_feature_rows(raw):
            part = image_features(rows, meta.scores[begin:begin + len(rows)], flip, normalise, detector_score)
            if feats is None:
                feats = np.empty((len(meta.names), part.shape[1]), dtype=np.float32)
            feats[begin:begin + len(rows)] = part
            begin += len(rows)
    else:
        feats = image_features(raw, meta.scores, flip, normalise, detector_score)
    ids, templates = template_features(feats, meta.templates, meta.medias)
    t1, t2, labels = read_template_pairs(files.pairs)
    scores = pair_scores(ids, templates, t1, t2, source=files.pairs)
    figures: Dict[str, float] = {}
    if one_to_n:
        probe_feats, probe_subjects = select_templates(ids, templates, *read_subject_list(files.probes), files.probes)
        gallery = [select_templates(ids, templates, *read_subject_list(path), path) for path in files.galleries]
        both = closed_set(probe_feats, probe_subjects, np.concatenate([g[0] for g in gallery]),
                          np.concatenate([g[1] for g in gallery]))
        figures.update({f"closed-set {name}": value for name, value in both.items()})
        each = [open_set(probe_feats, probe_subjects, g_feats, g_subjects) for g_feats, g_subjects in gallery]
        for k in (1, 5, 10):
            figures[f"open-set rank-{k}"] = sum(e[f"rank-{k} count"] for e in each) / len(probe_subjects)
        for fpir in FPIR_TARGETS:
            name = f"TPIR@FPIR={fpir:.0e}"
            figures[f"open-set {name}"] = sum(e[name] for e in each) / len(each)
    return Results(tar_at_far(labels, scores), figures, scores, labels)
