"""Input layouts of the legacy alignment scripts, turned into :class:`~insightgluon.align.pipeline.Job` lists.

* ``folder`` / ``lfw``: a tree of photos, one sub-directory per identity
  (LFW is exactly that); the output mirrors the tree and the file names.
* ``facescrub`` / ``megaface``: the same tree, or the devkit's image list
  (``--list``: JSON with a ``"path"`` array, or one relative path per line);
  a ``<image>.json`` beside a photo (MegaFace's metadata) gives the dataset's
  own ``bounding_box``, used to choose among detections and as the fallback crop.
* ``landmarks``: a landmark list (LFW ``lfw_landmark.txt``, VGGFace2 CSV, ``.lst``)
  replaces detection.
"""
import json
import os
from typing import Dict, List, Optional

import numpy as np

from insightgluon.align.landmarks import read_landmark_file
from insightgluon.align.pipeline import Job
from insightgluon.data.image import IMAGE_EXTENSIONS
from insightgluon.errors import ConfigError, DataFormatError

LAYOUTS = ("folder", "lfw", "facescrub", "megaface", "landmarks")
# Detector settings per layout (keys of insightgluon.align.mtcnn.PRESETS).
LAYOUT_PRESETS = {"folder": "lfw", "lfw": "lfw", "facescrub": "megaface", "megaface": "megaface",
                  "landmarks": "lfw"}


def _identity(rel: str) -> str:
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else ""


def tree_paths(root: str) -> List[str]:
    """Relative paths (``/``-separated, sorted) of every image under ``root``."""
    if not os.path.isdir(root):
        raise ConfigError(f"{root}: input directory does not exist")
    out = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                out.append(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
    return sorted(out)


def read_image_list(path: str) -> List[str]:
    """Relative image paths of a MegaFace/FaceScrub devkit list (JSON ``{"path": [...]}``) or a text list."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read image list ({err})") from None
    if text.lstrip().startswith("{"):
        try:
            paths = json.loads(text)["path"]
        except (ValueError, KeyError, TypeError):
            raise DataFormatError(f"{path}: JSON image list needs a 'path' array") from None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise DataFormatError(f"{path}: 'path' must be an array of strings")
    else:
        paths = [line.strip() for line in text.splitlines() if line.strip()]
    if not paths:
        raise DataFormatError(f"{path}: the image list is empty")
    return paths


def read_metadata_box(image_path: str) -> Optional[np.ndarray]:
    """The ``bounding_box`` of ``<image>.json`` as ``x1, y1, x2, y2``, or None without a JSON."""
    meta = image_path + ".json"
    if not os.path.exists(meta):
        return None
    try:
        with open(meta, encoding="utf-8") as f:
            box = json.load(f)["bounding_box"]
        x, y, w, h = (float(box[k]) for k in ("x", "y", "width", "height"))
    except (OSError, ValueError, KeyError, TypeError):
        raise DataFormatError(f"{meta}: expected a 'bounding_box' with numeric x, y, width, height") from None
    if not (w > 0 and h > 0):
        raise DataFormatError(f"{meta}: bounding_box has no area")
    return np.array([x, y, x + w, y + h])


def _safe_rel(rel: str, source: str) -> str:
    """Reject list entries that would write outside the output directory."""
    norm = rel.replace("\\", "/")
    if os.path.isabs(norm) or ".." in norm.split("/"):
        raise DataFormatError(f"{source}: image path {rel!r} must be relative and stay inside the input directory")
    return norm


def build_jobs(layout: str, input_dir: str, landmarks: str = "", image_list: str = "") -> List[Job]:
    """The jobs of one dataset, grouped by identity (sorted), output paths mirroring the input."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}'; choose one of: {', '.join(LAYOUTS)}")
    if layout == "landmarks":
        if not landmarks:
            raise ConfigError("--layout landmarks needs --landmarks FILE")
        entries = read_landmark_file(landmarks)
        jobs = [Job(os.path.join(input_dir, e.path), _safe_rel(e.path, landmarks), e.identity, e.landmarks, e.box)
                for e in entries]
        return sorted(jobs, key=lambda j: (j.identity, j.rel))
    if image_list:
        if layout not in ("facescrub", "megaface"):
            raise ConfigError("--list is for the facescrub and megaface layouts")
        rels = [_safe_rel(rel, image_list) for rel in read_image_list(image_list)]
    else:
        rels = tree_paths(input_dir)
    if not rels:
        raise ConfigError(f"{input_dir}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    with_meta = layout in ("facescrub", "megaface")
    jobs = []
    for rel in rels:
        src = os.path.join(input_dir, rel)
        box = read_metadata_box(src) if with_meta else None
        jobs.append(Job(src, rel, _identity(rel), None, box))
    return sorted(jobs, key=lambda j: (j.identity, j.rel))


def identity_labels(jobs: List[Job]) -> Dict[str, int]:
    """Label of each identity: its rank in sorted order."""
    return {name: i for i, name in enumerate(sorted({j.identity for j in jobs}))}
