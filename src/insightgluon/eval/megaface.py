"""MegaFace challenge 1 tooling: devkit feature files, feature generation, noise removal.

**Feature file** (the devkit's OpenCV matrix dump): ``struct.pack('4i', D, 1, 4, 5)``
(rows = D, cols = 1, element size 4, type 5 = ``CV_32F``) followed by ``D``
native-order float32 values. **Names** as the 2018 scripts wrote them:
FaceScrub ``<out>/<person>/<image>_<suffix>.bin`` and MegaFace
``<out>/<a1>/<a2>/<image>_<suffix>.bin`` (``<image>`` keeps its extension;
the 2018 suffix is ``<algo>_112x112``).

**Noise removal** (the 2018 ``remove_noises.py``): every feature is extended to
``D + 1`` dims. Clean features get 0 in the extra dim; MegaFace distractors on
the noise list get 100.0 there, so they are at least 100 away from every probe;
FaceScrub probes on the noise list are replaced by their identity's centre
(the sum of its clean extended features) plus U(-0.001, 0.001) noise on the
first ``D`` dims, L2-normalised.
"""
import logging
import os
import struct
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.errors import DataFormatError

LOG = logging.getLogger(__name__)
HEADER = struct.Struct("4i")
CV_32F = 5
NOISE_FILL = 100.0

__all__ = ["write_feature", "read_feature", "read_image_list", "read_noise_list", "feature_path",
           "load_features", "generate_features", "remove_noises"]


def write_feature(path: str, feature: np.ndarray) -> None:
    """Write one devkit feature file atomically (``path.tmp`` then rename)."""
    vec = np.ascontiguousarray(feature, dtype=np.float32).reshape(-1)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(HEADER.pack(len(vec), 1, 4, CV_32F))
        f.write(vec.tobytes())
    os.replace(tmp, path)


def read_feature(path: str) -> np.ndarray:
    """Read one devkit feature file -> ``(D,)`` float32; bad files raise :class:`DataFormatError`."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such feature file") from None
    if len(blob) < HEADER.size:
        raise DataFormatError(f"{path}: {len(blob)} bytes, shorter than the 16-byte matrix header")
    rows, cols, size, kind = HEADER.unpack_from(blob)
    if cols != 1 or size != 4 or kind != CV_32F or rows <= 0:
        raise DataFormatError(f"{path}: header ({rows}, {cols}, {size}, {kind}) is not a float32 "
                              f"column vector (D, 1, 4, 5)")
    if len(blob) != HEADER.size + 4 * rows:
        raise DataFormatError(f"{path}: {len(blob) - HEADER.size} data bytes for {rows} float32 values")
    return np.frombuffer(blob, dtype=np.float32, offset=HEADER.size).copy()


def read_image_list(path: str) -> List[str]:
    """Image paths of a ``.lst`` (``aligned<TAB>path<TAB>label...``) or a plain one-path-per-line list."""
    try:
        with open(path) as f:
            lines = [ln.rstrip("\n") for ln in f]
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such image list") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        image = fields[1] if len(fields) > 1 else fields[0]
        if not image.strip():
            raise DataFormatError(f"{path}: line {i}: no image path")
        out.append(image.strip())
    return out


def read_noise_list(path: str) -> set:
    """Entries of a noise list (``#`` comment lines skipped; a ``a<TAB>b`` line keeps ``b``)."""
    try:
        with open(path) as f:
            return {ln.strip().split("\t")[-1] for ln in f if ln.strip() and not ln.startswith("#")}
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such noise list") from None


def feature_path(root: str, image_path: str, suffix: str, depth: int) -> str:
    """``root/<last depth-1 folders>/<image>_<suffix>.bin`` (depth 2 FaceScrub, 3 MegaFace)."""
    parts = image_path.replace("\\", "/").split("/")
    if len(parts) < depth:
        raise DataFormatError(f"{image_path}: needs {depth - 1} parent folder(s) for the feature name")
    return os.path.join(root, *parts[-depth:-1], f"{parts[-1]}_{suffix}.bin")


def load_features(paths: Sequence[str], dtype=np.float32, progress: Optional[str] = None) -> np.ndarray:
    """Stack feature files into ``(N, D)`` (``dtype`` float16 halves the memory)."""
    from insightgluon.progress import progress as report

    out = None
    for i, path in enumerate(report(paths, desc=progress or "features", unit="file", leave=False)):
        vec = read_feature(path)
        if out is None:
            out = np.empty((len(paths), len(vec)), dtype=dtype)
        elif len(vec) != out.shape[1]:
            raise DataFormatError(f"{path}: {len(vec)} dims, expected {out.shape[1]} like {paths[0]}")
        out[i] = vec
    return out if out is not None else np.zeros((0, 0), dtype=dtype)


def _read_rgb(path: str, size: Tuple[int, int]) -> Optional[np.ndarray]:
    """RGB uint8 image of exactly ``size`` (H, W), or None (logged) if unreadable or misaligned."""
    from insightgluon.data.image import decode_jpeg

    try:
        with open(path, "rb") as f:
            rgb = decode_jpeg(f.read(), path)
    except (OSError, DataFormatError) as err:
        LOG.warning("%s: skipped (%s)", path, err)
        return None
    if rgb.shape[:2] != tuple(size):
        LOG.warning("%s: skipped: %dx%d, expected an aligned %dx%d face", path, rgb.shape[0],
                    rgb.shape[1], size[0], size[1])
        return None
    return rgb


def generate_features(embedders: Sequence, jobs: Iterable[Tuple[str, str]], size: Tuple[int, int],
                      chunk: int = 256, total: Optional[int] = None) -> Tuple[int, int]:
    """Embed aligned images and write one devkit feature file per image.

    Each model's flip-summed embedding is L2-normalised, the models' vectors are
    concatenated and the result normalised again (the 2018 recipe).

    Parameters
    ----------
    embedders : sequence of :class:`~insightgluon.eval.embed.Embedder`
    jobs : iterable of (image_path, feature_path)
    size : (H, W)
        Expected image size; other images are skipped with a warning.

    Returns
    -------
    (written, skipped)
    """
    from insightgluon.eval.embed import l2_normalize
    from insightgluon.progress import progress

    written = skipped = 0
    pending: List[Tuple[np.ndarray, str]] = []

    def flush():
        nonlocal written
        if not pending:
            return
        batch = np.stack([img for img, _ in pending])
        feats = l2_normalize(np.concatenate([e.embed(batch, progress=False)[0] for e in embedders], axis=1))
        for (_, out), vec in zip(pending, feats):
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            write_feature(out, vec)
        written += len(pending)
        pending.clear()

    for image_path, out_path in progress(jobs, total=total, desc="features", unit="img"):
        rgb = _read_rgb(image_path, size)
        if rgb is None:
            skipped += 1
            continue
        pending.append((rgb, out_path))
        if len(pending) >= chunk:
            flush()
    flush()
    return written, skipped


def remove_noises(facescrub_images: Sequence[str], megaface_images: Sequence[str],
                  facescrub_noises: set, megaface_noises: set,
                  fs_in: str, fs_out: str, mf_in: str, mf_out: str,
                  suffix_in: str, suffix_out: str, seed: int = 727) -> Dict[str, int]:
    """Write the cleaned, ``D + 1``-dim feature sets (see the module docstring).

    A FaceScrub image is noisy when its file name is on ``facescrub_noises``;
    a MegaFace image when its last three path parts ``a1/a2/name`` are on
    ``megaface_noises``. Returns counts of what was written.
    """
    rng = np.random.default_rng(seed)
    centres: Dict[str, np.ndarray] = {}
    noisy_probes = []
    for image in facescrub_images:
        person, name = image.replace("\\", "/").split("/")[-2:]
        src, dst = feature_path(fs_in, image, suffix_in, 2), feature_path(fs_out, image, suffix_out, 2)
        if name in facescrub_noises:
            noisy_probes.append((image, person, dst))
            continue
        ext = np.append(read_feature(src), np.float32(0.0))
        centres[person] = centres.get(person, 0) + ext
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        write_feature(dst, ext)
    for image, person, dst in noisy_probes:
        if person not in centres:
            raise DataFormatError(f"{image}: every image of '{person}' is on the noise list; "
                                  f"no clean centre to replace it with")
        vec = centres[person].astype(np.float64)
        vec[:-1] += rng.uniform(-0.001, 0.001, len(vec) - 1)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        write_feature(dst, vec / np.linalg.norm(vec))
    mf_noisy = 0
    for image in megaface_images:
        key = "/".join(image.replace("\\", "/").split("/")[-3:])
        noisy = key in megaface_noises
        ext = np.append(read_feature(feature_path(mf_in, image, suffix_in, 3)),
                        np.float32(NOISE_FILL if noisy else 0.0))
        dst = feature_path(mf_out, image, suffix_out, 3)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        write_feature(dst, ext)
        mf_noisy += noisy
    return {"facescrub": len(facescrub_images), "facescrub_noisy": len(noisy_probes),
            "megaface": len(megaface_images), "megaface_noisy": mf_noisy}
