"""Build datasets from image files: folders or ``.lst`` files -> ``.rec``; pairs files -> ``.bin``.

Images are assumed aligned (alignment is ``insightgluon align``). A JPEG that
already has the target size is stored byte for byte (legacy ``aligned=1``);
anything else (another size, PNG, ...) is resized to the target size and
re-encoded as JPEG. ``.lst`` lines with ``aligned=0`` and five landmarks are
aligned with the 5-point similarity transform, as ``face2rec2`` did.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.data.image import IMAGE_EXTENSIONS, decode_jpeg, encode_jpeg, resize_to
from insightgluon.errors import DataFormatError

log = logging.getLogger(__name__)

_JPEG_SOI = b"\xff\xd8"


@dataclass
class ImageItem:
    """One image to pack: file path, label, and landmarks when it still needs aligning."""

    path: str
    label: int
    landmarks: Optional[np.ndarray] = None
    where: str = ""


@dataclass
class ScanReport:
    """What a folder scan or ``.lst`` parse kept and skipped."""

    items: List[ImageItem] = field(default_factory=list)
    identities: List[str] = field(default_factory=list)
    skipped_non_image: List[str] = field(default_factory=list)
    skipped_lines: List[str] = field(default_factory=list)


def scan_folder(root: str) -> ScanReport:
    """Folder-per-identity tree: sorted sub-folder names become labels ``0..N-1``.

    Files without an image extension are skipped and counted; an identity
    folder with no image, or a root with no identity folder, is an error.
    """
    if not os.path.isdir(root):
        raise DataFormatError(f"{root}: not a directory")
    report = ScanReport()
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataFormatError(f"{root}: no identity sub-folders (expected ROOT/<identity>/<image files>)")
    for label, name in enumerate(names):
        folder = os.path.join(root, name)
        files = sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
        images = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        report.skipped_non_image += [os.path.join(folder, f) for f in files if f not in images]
        if not images:
            raise DataFormatError(f"{folder}: identity folder has no image files")
        report.items += [ImageItem(os.path.join(folder, f), label) for f in images]
        report.identities.append(name)
    return report


def parse_lst(lst_path: str) -> ScanReport:
    """Legacy ``.lst``: ``aligned<TAB>path<TAB>label[<TAB>x1 y1 x2 y2[<TAB>10 landmark floats]]``.

    Relative paths are relative to the ``.lst`` directory. Lines with
    ``aligned=0`` and no landmarks are dropped and counted (legacy). Labels must
    be ``0..N-1``; items are ordered by label (stable) so identities are contiguous.
    """
    base = os.path.dirname(os.path.abspath(lst_path))
    report = ScanReport()
    try:
        with open(lst_path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataFormatError(f"{lst_path}: no such .lst file") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        where = f"{lst_path}: line {lineno}"
        try:
            aligned, path, label = int(fields[0]), fields[1], int(fields[2])
            extra = [float(v) for v in fields[3:]]
        except (IndexError, ValueError):
            raise DataFormatError(f"{where}: expected 'aligned<TAB>path<TAB>label[<TAB>bbox[<TAB>landmarks]]', "
                                  f"got {line[:80]!r}") from None
        if len(extra) not in (0, 4, 14):
            raise DataFormatError(f"{where}: {len(extra)} numbers after the label; expected 0, 4 (bbox) "
                                  "or 14 (bbox + 10 landmarks)")
        landmarks = np.array(extra[4:], dtype=np.float64).reshape(2, 5).T if len(extra) == 14 else None
        if not aligned and landmarks is None:
            report.skipped_lines.append(where)
            continue
        report.items.append(ImageItem(os.path.join(base, path), label, None if aligned else landmarks, where))
    if not report.items:
        raise DataFormatError(f"{lst_path}: no usable lines")
    report.items.sort(key=lambda it: it.label)
    labels = sorted({it.label for it in report.items})
    if labels != list(range(len(labels))):
        missing = sorted(set(range(labels[-1] + 1)) - set(labels))[:3]
        raise DataFormatError(f"{lst_path}: labels must be 0..N-1 without gaps (missing {missing}, "
                              f"smallest {labels[0]})")
    report.identities = [str(k) for k in labels]
    return report


def load_aligned(item: ImageItem, image_size: Sequence[int], quality: int) -> bytes:
    """JPEG bytes of ``item`` at ``image_size`` (verbatim when it already is such a JPEG)."""
    where = item.where or item.path
    try:
        with open(item.path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise DataFormatError(f"{where}: cannot read image {item.path} ({err.strerror})") from None
    rgb = decode_jpeg(data, f"{item.where}: {item.path}" if item.where else item.path)
    if item.landmarks is not None:
        from insightgluon.align.transform import align_face

        return encode_jpeg(align_face(rgb, item.landmarks, image_size), quality)
    if data[:2] == _JPEG_SOI and rgb.shape[:2] == tuple(int(v) for v in image_size):
        return data
    return encode_jpeg(resize_to(rgb, image_size), quality)


#: Where LFW ``pairs.txt`` names live: ``name/name_0001.jpg``.
LFW_PATTERN = "{name}/{name}_{num:04d}.jpg"


def parse_pairs(pairs_path: str, image_root: str, pattern: str) -> List[Tuple[str, str, bool, str]]:
    """Pairs from an LFW ``pairs.txt`` or a simple ``path1 path2 0|1`` file.

    LFW lines are ``name n1 n2`` (same) and ``name1 n1 name2 n2`` (different),
    resolved with ``pattern`` (``{name}/{name}_{num:04d}.jpg``); an optional first
    line ``folds pairs_per_fold`` is skipped. Simple lines name two image paths
    and ``1`` for the same person. Relative paths are relative to ``image_root``.
    Returns ``(path1, path2, same, "file: line N")`` per pair.
    """
    try:
        with open(pairs_path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataFormatError(f"{pairs_path}: no such pairs file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{pairs_path}: cannot read pairs file ({err})") from None
    pairs = []
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        ints = [v.lstrip("-").isdigit() for v in fields]
        where = f"{pairs_path}: line {lineno}"
        if lineno == 1 and len(fields) == 2 and all(ints):
            continue  # LFW header: number of folds and pairs per fold
        if len(fields) == 3 and ints[1] and ints[2]:
            a = pattern.format(name=fields[0], num=int(fields[1]))
            b = pattern.format(name=fields[0], num=int(fields[2]))
            same = True
        elif len(fields) == 4 and ints[1] and ints[3]:
            a = pattern.format(name=fields[0], num=int(fields[1]))
            b = pattern.format(name=fields[2], num=int(fields[3]))
            same = False
        elif len(fields) == 3 and fields[2] in ("0", "1"):
            a, b, same = fields[0], fields[1], fields[2] == "1"
        else:
            raise DataFormatError(f"{where}: expected 'name n1 n2', 'name1 n1 name2 n2' or 'path1 path2 0|1', "
                                  f"got {line[:80]!r}")
        pairs.append((os.path.join(image_root, a), os.path.join(image_root, b), same, where))
    if not pairs:
        raise DataFormatError(f"{pairs_path}: no pairs")
    return pairs
