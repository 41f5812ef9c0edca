"""Landmark lists (LFW, VGGFace2, legacy ``.lst``) and on-the-fly alignment for training.

Formats read by :func:`read_landmark_file`:

* LFW ``lfw_landmark.txt``: ``path x1 y1 x2 y2 ... x5 y5`` (whitespace separated);
  the identity is the path's directory.
* VGGFace2 ``bb_landmark/loose_landmark_{train,test}.csv``: a header
  ``NAME_ID,P1X,P1Y,...,P5Y`` then ``"n000002/0001_01",x1,y1,...``; the image is
  ``NAME_ID + ".jpg"`` and the identity the part before the slash.
* InsightFace ``.lst``: ``aligned<TAB>path<TAB>label[<TAB>x1 y1 x2 y2[<TAB>lx1..lx5 ly1..ly5]]``
  (landmarks as five x then five y, the legacy ``(2, 5).T`` layout).
"""
import csv
import os
from typing import List, NamedTuple, Optional, Sequence

import cv2
import numpy as np

from insightgluon.align.transform import align_face, crop_bbox
from insightgluon.errors import DataFormatError


class LandmarkEntry(NamedTuple):
    """One photo of a landmark list; ``path`` is relative to the image root."""

    path: str
    identity: str
    landmarks: Optional[np.ndarray] = None  # (5, 2) x, y
    box: Optional[np.ndarray] = None  # (4,) x1, y1, x2, y2
    label: Optional[int] = None  # given by .lst files only
    aligned: bool = False  # an already aligned crop (.lst "aligned=1")


def _floats(values: Sequence[str], where: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        raise DataFormatError(f"{where}: expected numbers, got {' '.join(values)!r}") from None
    if not np.isfinite(out).all():
        raise DataFormatError(f"{where}: coordinates must be finite")
    return out


def _read_vggface2(path: str, lines: List[str]) -> List[LandmarkEntry]:
    out = []
    for number, row in enumerate(csv.reader(lines[1:]), start=2):
        if not row:
            continue
        where = f"{path}: line {number}"
        if len(row) != 11:
            raise DataFormatError(f"{where}: expected NAME_ID and 10 coordinates, got {len(row)} fields")
        name = row[0].strip()
        out.append(LandmarkEntry(name + ".jpg", name.split("/")[0], _floats(row[1:], where).reshape(5, 2)))
    return out


def _read_lst(path: str, lines: List[str]) -> List[LandmarkEntry]:
    out = []
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r\n").split("\t")
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        if len(fields) < 3:
            raise DataFormatError(f"{where}: expected 'aligned<TAB>path<TAB>label[...]'")
        try:
            aligned, label = int(fields[0]), int(float(fields[2]))
        except ValueError:
            raise DataFormatError(f"{where}: aligned flag and label must be integers") from None
        numbers = _floats(" ".join(fields[3:]).split(), where)
        if len(numbers) not in (0, 4, 14):
            raise DataFormatError(f"{where}: expected 0, 4 (box) or 14 (box + landmarks) numbers, "
                                  f"got {len(numbers)}")
        box = numbers[:4] if len(numbers) >= 4 else None
        marks = numbers[4:].reshape(2, 5).T.copy() if len(numbers) == 14 else None
        if not aligned and box is None:
            continue  # the legacy reader drops unaligned lines without a box or landmarks
        out.append(LandmarkEntry(fields[1], str(label), marks, box, label, bool(aligned)))
    return out


def _read_lfw(path: str, lines: List[str]) -> List[LandmarkEntry]:
    out = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}: line {number}"
        if len(fields) != 11:
            raise DataFormatError(f"{where}: expected 'path x1 y1 ... x5 y5' (11 fields), got {len(fields)}")
        identity = os.path.dirname(fields[0]).replace(os.sep, "/")
        out.append(LandmarkEntry(fields[0], identity, _floats(fields[1:], where).reshape(5, 2)))
    return out


def read_landmark_file(path: str) -> List[LandmarkEntry]:
    """Parse an LFW, VGGFace2 or ``.lst`` landmark list (the format is recognised from its content).

    Raises
    ------
    DataFormatError
        Naming the file and line of the first malformed entry, or an empty list.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: cannot read landmark list ({err})") from None
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip('"').upper().startswith("NAME_ID"):
        entries = _read_vggface2(path, lines)
    elif path.endswith(".lst") or "\t" in first:
        entries = _read_lst(path, lines)
    else:
        entries = _read_lfw(path, lines)
    if not entries:
        raise DataFormatError(f"{path}: no entries")
    return entries


def read_rgb(path: str, where: str = "") -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); DataFormatError if missing or undecodable."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        reason = "file not found" if not os.path.exists(path) else "image does not decode"
        raise DataFormatError(f"{where or path}: {reason}" + (f" ({path})" if where else ""))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class LandmarkListDataset:
    """Align photos on the fly from a landmark list: items ``(rgb uint8 (H, W, 3), label)``.

    No MXNet is used, so it runs in DataLoader worker processes and plugs into
    the training loop wherever a :class:`~insightgluon.data.recordio.FaceRecordDataset`
    would (same item type, ``labels`` and ``num_classes``).

    Parameters
    ----------
    list_file : str
        LFW, VGGFace2 or ``.lst`` landmark list (see :func:`read_landmark_file`).
    root : str
        Directory the list's image paths are relative to.
    image_size : (height, width)
    transform : callable, optional
        ``transform(rgb, rng) -> rgb`` applied after alignment (e.g. ``FaceAugment``).
    seed : int
        Seed of the generator passed to ``transform``; each worker process
        mixes in its process id so workers do not repeat each other.

    Labels are the ``.lst`` labels when given, otherwise the rank of the
    identity (directory or VGGFace2 class id) in sorted order.
    """

    def __init__(self, list_file: str, root: str, image_size=(112, 112), transform=None, seed: int = 0):
        self.list_file, self.root = list_file, root
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.entries = read_landmark_file(list_file)
        if all(e.label is not None for e in self.entries):
            self.labels = np.array([e.label for e in self.entries], dtype=np.int64)
            self.identities = sorted({e.identity for e in self.entries})
        else:
            self.identities = sorted({e.identity for e in self.entries})
            index = {name: i for i, name in enumerate(self.identities)}
            self.labels = np.array([index[e.identity] for e in self.entries], dtype=np.int64)
        self.num_classes = int(self.labels.max()) + 1
        self.transform = transform
        self.seed = seed
        self._rng, self._rng_pid = None, None

    def _generator(self) -> np.random.Generator:
        if self._rng is None or self._rng_pid != os.getpid():
            self._rng, self._rng_pid = np.random.default_rng([self.seed, os.getpid()]), os.getpid()
        return self._rng

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, pos: int):
        entry = self.entries[pos]
        rgb = read_rgb(os.path.join(self.root, entry.path), f"{self.list_file}: entry {pos} ({entry.path})")
        if entry.landmarks is not None:
            try:
                rgb = align_face(rgb, entry.landmarks, self.image_size)
            except ValueError as err:
                raise DataFormatError(f"{self.list_file}: entry {pos} ({entry.path}): {err}") from None
        elif entry.aligned:
            height, width = self.image_size
            if rgb.shape[:2] != (height, width):
                rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        else:
            rgb = crop_bbox(rgb, entry.box, image_size=self.image_size)
        if self.transform is not None:
            rgb = self.transform(rgb, self._generator())
        return rgb, int(self.labels[pos])
