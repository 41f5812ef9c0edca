"""InsightFace RecordIO datasets: ``train.rec`` + ``train.idx`` + ``property`` (REFERENCE §2.1).

Layout written by ``face2rec2`` and read by ``FaceImageIter``:

* record 0: flag 2, label ``[N+1, N+1+num_ids]``, empty body (the identity-record range);
* records ``1..N``: images, label ``[label, aligned]`` (or a scalar label), JPEG body;
* records ``N+1..N+num_ids``: one per identity, label ``[first, last+1]`` (its image range).

Datasets from plain ``im2rec`` have no record-0 header (flag 0); then every key
in the ``.idx`` is an image and labels come from the image headers.
"""
import logging
import os
from typing import Iterable, Optional, Tuple

import numpy as np

from insightgluon.data._atomic import atomic_dir
from insightgluon.data.image import decode_jpeg
from insightgluon.data.property import PROPERTY_FILE, Property, read_property, write_property
from insightgluon.data.rio import RecordReader, RecordWriter, pack_header, read_index, unpack_header, write_index
from insightgluon.errors import DataFormatError

log = logging.getLogger(__name__)

_ID_RECORD_BYTES = 40  # frame 8 + IRHeader 24 + two float32 labels
_MAX_EXACT_KEY = 1 << 24  # keys are stored as float32 labels in the legacy layout
_SAMPLE_CHECKS = 32  # records probed at open time to catch a mismatched .idx early


def _resolve_paths(path: str) -> Tuple[str, str, Optional[str]]:
    path = os.fspath(path)
    if os.path.isdir(path):
        prop = os.path.join(path, PROPERTY_FILE)
        if not os.path.exists(prop):
            raise DataFormatError(f"{prop}: missing (incomplete dataset: a dataset directory needs property)")
        return os.path.join(path, "train.rec"), os.path.join(path, "train.idx"), prop
    if not path.endswith(".rec"):
        raise DataFormatError(f"{path}: not a dataset directory or a .rec file")
    prop = os.path.join(os.path.dirname(path), PROPERTY_FILE)
    return path, path[:-4] + ".idx", prop if os.path.exists(prop) else None


def _spread(n: int, count: int = _SAMPLE_CHECKS) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, count)).astype(np.int64)) if n else np.empty(0, np.int64)


class FaceRecordDataset:
    """Images and identities of an InsightFace ``.rec`` dataset, read lazily.

    Opening parses the ``.idx`` with NumPy and reads only the header and the
    identity records (plus a few probes), never the image data; 5.8M keys open
    in about a second.

    Parameters
    ----------
    path : str
        Dataset directory (``train.rec``, ``train.idx``, ``property``) or a ``.rec`` path.
    images_filter : int
        Skip identities with fewer images (the November 2018 ``--images-filter``).

    Attributes
    ----------
    labels : np.ndarray
        ``(len(self),)`` int64, the label of each position.
    num_classes : int
        From ``property`` (or the largest label + 1 when there is none).
    image_size : (int, int) or None
        ``(H, W)`` from ``property``.
    """

    def __init__(self, path: str, images_filter: int = 0):
        self.rec_path, self.idx_path, prop_path = _resolve_paths(path)
        if not os.path.exists(self.rec_path):
            raise DataFormatError(f"{self.rec_path}: missing")
        self._reader = RecordReader(self.rec_path)
        keys, offsets = read_index(self.idx_path, self._reader.size)
        self._keys, self._offsets = keys, offsets
        prop = read_property(prop_path) if prop_path else None
        header = self._read_header0()
        if header is None:
            image_keys, labels = self._scan_plain(keys)
            self.num_identity_records = 0
        else:
            image_keys, labels = self._read_identities(*header)
            self.num_identity_records = header[1] - header[0]
        self.num_classes = prop.num_classes if prop else int(labels.max(initial=-1)) + 1
        self.image_size = (prop.height, prop.width) if prop else None
        self._check_labels(labels, prop_path)
        keep = self._filter(labels, int(images_filter))
        self._image_keys = image_keys[keep]
        self._image_offsets = self._offsets_of(self._image_keys)
        self.labels = labels[keep]
        self._index_identities()
        self._probe()

    # -- opening -------------------------------------------------------------------------------
    def _offsets_of(self, wanted: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._keys, wanted)
        pos = np.minimum(pos, len(self._keys) - 1)
        missing = np.flatnonzero(self._keys[pos] != wanted)
        if missing.size:
            raise DataFormatError(f"{self.idx_path}: record {wanted[missing[0]]} is referenced by the "
                                  f"dataset header but is not in the index")
        return self._offsets[pos]

    def _record(self, key: int) -> Tuple[int, object, bytes]:
        where = f"{self.rec_path}: record {key}"
        return unpack_header(self._reader.read(int(self._offsets_of(np.array([key]))[0]), where), where)

    def _read_header0(self) -> Optional[Tuple[int, int]]:
        if self._keys[0] != 0:
            return None
        flag, label, body = self._record(0)
        if flag != 2 or body:  # not the InsightFace header: an im2rec image record
            return None
        first, stop = int(label[0]), int(label[1])
        last_key = int(self._keys[-1])
        if not (1 <= first <= stop <= last_key + 1):
            raise DataFormatError(f"{self.rec_path}: record 0: identity range [{first}, {stop}) is outside "
                                  f"the file (keys 0..{last_key})")
        return first, stop

    def _read_identities(self, first: int, stop: int) -> Tuple[np.ndarray, np.ndarray]:
        ranges = self._identity_ranges(first, stop)
        bad = np.flatnonzero((ranges[:, 0] < 1) | (ranges[:, 1] > first) | (ranges[:, 0] >= ranges[:, 1]))
        if bad.size:
            a, b = ranges[bad[0]]
            raise DataFormatError(f"{self.rec_path}: record {first + bad[0]}: identity range [{a}, {b}) is "
                                  f"outside the image records [1, {first})")
        counts = ranges[:, 1] - ranges[:, 0]
        image_keys = np.repeat(ranges[:, 0] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        id_labels = np.arange(len(ranges), dtype=np.int64)
        # Labels live in the image headers; they normally equal the identity order, so probe a few first.
        probe = _spread(len(ranges))
        if any(self._image_label(int(ranges[i, 0])) != i for i in probe):
            id_labels = np.array([self._image_label(int(a)) for a in ranges[:, 0]], dtype=np.int64)
        return image_keys, np.repeat(id_labels, counts)

    def _identity_ranges(self, first: int, stop: int) -> np.ndarray:
        offsets = self._offsets_of(np.arange(first, stop, dtype=np.int64))
        if offsets.size == 0:
            return np.empty((0, 2), np.int64)
        lo, hi = int(offsets.min()), int(offsets.max()) + _ID_RECORD_BYTES
        if hi - lo <= max(64 << 20, 4 * _ID_RECORD_BYTES * offsets.size) and hi <= self._reader.size:
            span = np.frombuffer(self._reader.read_span(lo, hi), dtype=np.uint8)
            rows = span[(offsets - lo)[:, None] + np.arange(_ID_RECORD_BYTES)]
            words = rows.view("<u4")
            if (np.all(words[:, 0] == 0xCED7230A) and np.all(words[:, 1] == 32) and np.all(words[:, 2] == 2)):
                return rows[:, 32:40].copy().view("<f4").astype(np.int64)
        result = np.empty((offsets.size, 2), np.int64)  # unusual layout: read one by one, exact errors
        for i in range(offsets.size):
            flag, label, _ = self._record(first + i)
            if flag < 2:
                raise DataFormatError(f"{self.rec_path}: record {first + i}: identity record without "
                                      f"a [first, last+1) label")
            result[i] = label[:2]
        return result

    def _image_label(self, key: int) -> int:
        flag, label, _ = self._record(key)
        return int(label if flag == 0 else label[0])

    def _scan_plain(self, keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        labels = np.array([self._image_label(int(k)) for k in keys], dtype=np.int64)
        return keys.copy(), labels

    def _check_labels(self, labels: np.ndarray, prop_path: Optional[str]) -> None:
        if labels.size and labels.min() < 0:
            raise DataFormatError(f"{self.rec_path}: negative label {labels.min()}")
        if labels.size and labels.max() >= self.num_classes:
            raise DataFormatError(f"{prop_path}: says {self.num_classes} classes but the records use label "
                                  f"{labels.max()}")
        if self.num_identity_records and self.num_identity_records != self.num_classes:
            raise DataFormatError(f"{prop_path}: says {self.num_classes} classes but {self.rec_path} has "
                                  f"{self.num_identity_records} identity records")

    def _filter(self, labels: np.ndarray, images_filter: int) -> np.ndarray:
        if images_filter <= 0 or labels.size == 0:
            return np.ones(labels.size, dtype=bool)
        counts = np.bincount(labels, minlength=self.num_classes)
        return counts[labels] >= images_filter

    def _index_identities(self) -> None:
        labels = self.labels
        self._order = None if np.all(labels[1:] >= labels[:-1]) else np.argsort(labels, kind="stable")
        ordered = labels if self._order is None else labels[self._order]
        self._starts = np.searchsorted(ordered, np.arange(self.num_classes + 1))

    def _probe(self) -> None:
        """Read a few records (the last one in the file included) to catch truncation and mismatch now."""
        last = int(np.argmax(self._offsets))
        self._reader.read(int(self._offsets[last]), f"{self.rec_path}: record {self._keys[last]}")
        for pos in _spread(len(self)):
            self.read(int(pos))
        if len(self) and self.image_size:
            shape = self[0][0].shape[:2]
            if shape != self.image_size:
                raise DataFormatError(f"{self.rec_path}: images are {shape[0]}x{shape[1]} but property says "
                                      f"{self.image_size[0]}x{self.image_size[1]}")

    # -- access --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.labels.size)

    @property
    def num_identities(self) -> int:
        """Identities with at least one image (after ``images_filter``)."""
        return int(np.count_nonzero(np.diff(self._starts)))

    def identity_counts(self) -> np.ndarray:
        """``(num_classes,)`` int64: images of each identity (0 for absent or filtered ones)."""
        return np.diff(self._starts)

    def identity_positions(self, k: int) -> np.ndarray:
        """Positions (indices into this dataset) of the images of identity ``k``, int64."""
        if not 0 <= k < self.num_classes:
            raise IndexError(f"identity {k} out of range [0, {self.num_classes})")
        a, b = int(self._starts[k]), int(self._starts[k + 1])
        return np.arange(a, b, dtype=np.int64) if self._order is None else self._order[a:b].copy()

    def read(self, pos: int) -> Tuple[int, bytes]:
        """``(label, encoded image bytes)`` of position ``pos``, straight from its record."""
        offset = int(self._image_offsets[pos])
        where = f"{self.rec_path}: record {self._image_keys[pos]}"
        flag, label, body = unpack_header(self._reader.read(offset, where), where)
        return int(label if flag == 0 else label[0]), body

    def __getitem__(self, pos: int) -> Tuple[np.ndarray, int]:
        """``(rgb, label)``: the decoded ``(H, W, 3)`` uint8 RGB image and its label."""
        _, body = self.read(pos)
        return decode_jpeg(body, f"{self.rec_path}: record {self._image_keys[pos]}"), int(self.labels[pos])

    def __repr__(self) -> str:
        return (f"FaceRecordDataset({self.rec_path!r}: {len(self)} images, {self.num_identities} identities, "
                f"num_classes={self.num_classes})")


def write_face_dataset(out_dir: str, samples: Iterable[Tuple[int, bytes]], image_size=(112, 112),
                       num_classes: Optional[int] = None) -> Property:
    """Write ``train.rec``/``train.idx``/``property`` in the InsightFace layout, atomically.

    Parameters
    ----------
    out_dir : str
        Created (or its dataset files replaced) only once everything is written.
    samples : iterable of (int, bytes)
        ``(label, jpeg_bytes)`` grouped by label: all images of one identity together.
    image_size : (int, int)
        ``(H, W)`` recorded in ``property``; the first image is checked against it.
    num_classes : int, optional
        Defaults to the number of identities; labels must be below it.

    Returns
    -------
    Property
    """
    height, width = int(image_size[0]), int(image_size[1])
    with atomic_dir(out_dir) as tmp:
        with open(os.path.join(tmp, "train.rec"), "wb") as f:
            offsets, ranges, labels = _write_records(f, samples, (height, width), out_dir)
        write_index(os.path.join(tmp, "train.idx"), range(len(offsets)), offsets)
        num_images, num_ids = ranges[-1][1] - 1, len(ranges)
        num_classes = num_ids if num_classes is None else int(num_classes)
        if max(labels) >= num_classes or min(labels) < 0 or num_ids != num_classes:
            raise DataFormatError(f"{out_dir}: {num_ids} identities with labels {min(labels)}..{max(labels)} "
                                  f"do not match num_classes={num_classes}")
        prop = Property(num_classes, height, width)
        write_property(tmp, prop)
    log.info("wrote %s: %d images, %d identities", out_dir, num_images, num_ids)
    return prop


def _write_records(f, samples, image_size, out_dir) -> Tuple[list, list, list]:
    """Header, image and identity records; returns (offsets by key, [first, stop) per identity, labels)."""
    writer = RecordWriter(f)
    writer.write(pack_header([0.0, 0.0], b""))  # placeholder header, rewritten in place below
    offsets, ranges, labels, seen = [0], [], [], set()
    for key, (label, jpeg) in enumerate(samples, start=1):
        label = int(label)
        if not labels or labels[-1] != label:
            if label in seen:
                raise DataFormatError(f"{out_dir}: samples are not grouped by label: label {label} appears "
                                      f"again at image {key}")
            seen.add(label)
            if ranges:
                ranges[-1][1] = key
            ranges.append([key, key])
            labels.append(label)
        if key == 1:
            shape = decode_jpeg(jpeg, f"{out_dir}: first image").shape[:2]
            if shape != tuple(image_size):
                raise DataFormatError(f"{out_dir}: images are {shape[0]}x{shape[1]}, "
                                      f"expected {image_size[0]}x{image_size[1]}")
        offsets.append(writer.write(pack_header([float(label), 1.0], jpeg)))
    num_images = len(offsets) - 1
    if not num_images:
        raise DataFormatError(f"{out_dir}: no images to write")
    ranges[-1][1] = num_images + 1
    if num_images + len(ranges) + 1 > _MAX_EXACT_KEY:
        raise DataFormatError(f"{out_dir}: {num_images} images + {len(ranges)} identities exceed the 2^24 "
                              "records a float32 header label can address")
    for a, b in ranges:
        offsets.append(writer.write(pack_header([float(a), float(b)], b"")))
    f.seek(0)  # the header has a fixed size, so it can be rewritten in place
    RecordWriter(f).write(pack_header([float(num_images + 1), float(num_images + 1 + len(ranges))], b""))
    return offsets, ranges, labels
