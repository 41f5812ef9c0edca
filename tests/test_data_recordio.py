"""RecordIO datasets: round trips, legacy layouts, an independent reader and every bad input."""
import os
import pickle
import struct

import numpy as np
import pytest

from _datautil import make_tiny_dataset, tiny_face
from insightgluon.data.image import encode_jpeg
from insightgluon.data.property import Property, read_property, write_property
from insightgluon.data.recordio import FaceRecordDataset, write_face_dataset
from insightgluon.data.rio import MAGIC, RecordReader, RecordWriter
from insightgluon.errors import DataFormatError


def _independent_read(directory):
    """A reader written from REFERENCE §2.1 alone: .idx lines, dmlc frames, IRHeader 'IfQQ'."""
    with open(os.path.join(directory, "train.idx")) as f:
        index = {int(k): int(o) for k, o in (line.split("\t") for line in f)}
    with open(os.path.join(directory, "train.rec"), "rb") as f:
        blob = f.read()

    def record(key):
        magic, lrec = struct.unpack_from("<II", blob, index[key])
        assert magic == 0xCED7230A and lrec >> 29 == 0
        payload = blob[index[key] + 8:index[key] + 8 + (lrec & (2**29 - 1))]
        flag, label, _, _ = struct.unpack_from("<IfQQ", payload)
        labels = struct.unpack_from(f"<{flag}f", payload, 24) if flag else (label,)
        return flag, labels, payload[24 + 4 * flag:]

    return index, record


def test_round_trip_and_independent_reader(tmp_path):
    out = make_tiny_dataset(tmp_path, num_ids=3, per_id=2)
    assert read_property(out) == Property(3, 112, 112)
    index, record = _independent_read(out)
    assert sorted(index) == list(range(1 + 6 + 3))
    assert record(0) == (2, (7.0, 10.0), b"")
    assert [record(k)[1] for k in (7, 8, 9)] == [(1.0, 3.0), (3.0, 5.0), (5.0, 7.0)]
    flag, (label, aligned), jpeg = record(4)
    assert (flag, label, aligned) == (2, 1.0, 1.0) and jpeg == encode_jpeg(tiny_face(1, 1))

    ds = FaceRecordDataset(out)
    assert (len(ds), ds.num_classes, ds.num_identities) == (6, 3, 3)
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.identity_positions(1).tolist() == [2, 3]
    rgb, label = ds[3]
    assert rgb.shape == (112, 112, 3) and rgb.dtype == np.uint8 and label == 1
    assert np.abs(rgb.astype(int) - tiny_face(1, 1)).mean() < 8
    assert ds.read(3) == (1, jpeg)
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers receive a pickled copy
    assert clone.read(5) == ds.read(5)
    assert FaceRecordDataset(os.path.join(out, "train.rec")).labels.tolist() == ds.labels.tolist()


def test_mxnet_reads_what_we_write(tmp_path):
    mx = pytest.importorskip("mxnet")
    out = make_tiny_dataset(tmp_path, num_ids=2, per_id=2)
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, "train.idx"), os.path.join(out, "train.rec"), "r")
    header, _ = mx.recordio.unpack(rec.read_idx(0))
    assert header.flag == 2 and header.label.tolist() == [5.0, 7.0]
    header, img = mx.recordio.unpack_img(rec.read_idx(3))
    assert header.label.tolist() == [1.0, 1.0] and img.shape == (112, 112, 3)
    rec.close()


def _legacy_write(directory, groups, insightface=True, num_classes=None):
    """Build a legacy dataset with plain mx.recordio, as face2rec2 (flag 2) or im2rec (flag 0) did."""
    mx = pytest.importorskip("mxnet")
    os.makedirs(directory)
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(directory, "train.idx"),
                                        os.path.join(directory, "train.rec"), "w")
    images = [(label, encode_jpeg(tiny_face(label, i))) for label, n in groups for i in range(n)]
    first = 1 if insightface else 0
    if insightface:
        ranges, key = [], 1
        for label, n in groups:
            ranges.append((key, key + n))
            key += n
        stop = len(images) + 1
        rec.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(0, [stop, stop + len(ranges)], 0, 0), b""))
    for key, (label, jpeg) in enumerate(images, start=first):
        lab = [float(label), 1.0] if insightface else float(label)
        rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, lab, key, 0), jpeg))
    if insightface:
        for i, (a, b) in enumerate(ranges):
            rec.write_idx(stop + i, mx.recordio.pack(mx.recordio.IRHeader(0, [a, b], 0, 0), b""))
    rec.close()
    write_property(directory, Property(num_classes or len(groups), 112, 112))
    return directory


def test_legacy_insightface_layout(tmp_path):
    ds = FaceRecordDataset(_legacy_write(str(tmp_path / "ms1m"), [(0, 3), (1, 1), (2, 4)]))
    assert len(ds) == 8 and ds.num_identity_records == 3
    assert ds.labels.tolist() == [0, 0, 0, 1, 2, 2, 2, 2]
    assert ds[4][1] == 2 and ds.identity_positions(2).tolist() == [4, 5, 6, 7]
    filtered = FaceRecordDataset(str(tmp_path / "ms1m"), images_filter=2)  # drops the 1-image identity
    assert len(filtered) == 7 and filtered.identity_positions(1).size == 0 and filtered.num_identities == 2


def test_legacy_plain_im2rec_scalar_labels(tmp_path):
    # flag-0 records, no header: every .idx key is an image, labels from the image headers
    ds = FaceRecordDataset(_legacy_write(str(tmp_path / "plain"), [(1, 2), (0, 2)], insightface=False))
    assert len(ds) == 4 and ds.num_identity_records == 0
    assert ds.labels.tolist() == [1, 1, 0, 0]
    assert ds.identity_positions(0).tolist() == [2, 3] and ds[0][1] == 1


def test_split_record_containing_magic(tmp_path):
    mx = pytest.importorskip("mxnet")
    payload = b"abcd" + struct.pack("<I", MAGIC) + b"efgh" + struct.pack("<I", MAGIC) + b"xyz"
    path = str(tmp_path / "x.rec")
    with open(path, "wb") as f:
        offsets = [RecordWriter(f).write(payload)]
        offsets.append(RecordWriter(f).write(b"tail"))
    reader = RecordReader(path)
    assert reader.read(offsets[0]) == payload and reader.read(offsets[1]) == b"tail"
    rec = mx.recordio.MXRecordIO(path, "r")  # MXNet's C++ reader agrees on the framing
    assert rec.read() == payload and rec.read() == b"tail"
    rec.close()


def test_writer_rejects_ungrouped_labels_and_leaves_nothing(tmp_path):
    jpeg = encode_jpeg(tiny_face(0))
    with pytest.raises(DataFormatError, match="bad: samples are not grouped by label: label 0 appears again "
                                              "at image 3"):
        write_face_dataset(str(tmp_path / "bad"), [(0, jpeg), (1, jpeg), (0, jpeg)])
    assert os.listdir(tmp_path) == []  # no half-written dataset, no temp dir left behind
    with pytest.raises(DataFormatError, match="bad: images are 112x112, expected 96x112"):
        write_face_dataset(str(tmp_path / "bad"), [(0, jpeg)], image_size=(96, 112))


def test_writer_replaces_existing_dataset(tmp_path):
    out = make_tiny_dataset(tmp_path, num_ids=2, per_id=2)
    write_face_dataset(out, [(0, encode_jpeg(tiny_face(5)))] * 3)
    assert len(FaceRecordDataset(out)) == 3 and sorted(os.listdir(tmp_path)) == ["tiny"]


# -- bad input ------------------------------------------------------------------------------------
def _patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.fixture
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path, num_ids=3, per_id=2)


def _rewrite_idx(directory, fn):
    path = os.path.join(directory, "train.idx")
    with open(path) as f:
        rows = [list(map(int, line.split())) for line in f]
    with open(path, "w") as f:
        f.writelines(f"{k}\t{o}\n" for k, o in fn(rows))


def _error(path, match):
    with pytest.raises(DataFormatError, match=match) as info:
        FaceRecordDataset(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_wrong_magic(tiny):
    _patch(os.path.join(tiny, "train.rec"), 0, b"\0\0\0\0")
    msg = _error(tiny, r"record 0: no record at byte 0 \(magic 0x00000000, expected 0xced7230a\)")
    assert msg.startswith(os.path.join(tiny, "train.rec"))


def test_truncated_rec(tiny):
    path = os.path.join(tiny, "train.rec")
    os.truncate(path, os.path.getsize(path) - 20)
    _error(tiny, r"train.rec: record 9: truncated .rec")


def test_idx_offset_past_end(tiny):
    _rewrite_idx(tiny, lambda rows: [(k, o + 10**6 if k == 4 else o) for k, o in rows])
    _error(tiny, r"train.idx: key 4 points to byte \d+, past the end")


def test_idx_rec_mismatch(tiny):
    _rewrite_idx(tiny, lambda rows: [(k, o + 4 if k == 6 else o) for k, o in rows])
    _error(tiny, r"train.rec: record 6: no record at byte \d+ .*\.idx does not match \.rec")


def test_malformed_idx_line(tiny):
    with open(os.path.join(tiny, "train.idx"), "a") as f:
        f.write("10\tnot-a-number\n")
    _error(tiny, r"train.idx: line 11: expected 'key<TAB>offset'")


def test_undecodable_jpeg_names_record(tmp_path):
    good = encode_jpeg(tiny_face(0))
    out = str(tmp_path / "ds")
    write_face_dataset(out, [(0, good), (0, good[:200]), (1, good)])
    ds = FaceRecordDataset(out)
    with pytest.raises(DataFormatError, match=r"train.rec: record 2: image data does not decode"):
        ds[1]


def test_property_disagrees_with_records(tiny):
    write_property(tiny, Property(5, 112, 112))
    _error(tiny, r"property: says 5 classes but .* has 3 identity records")
    write_property(tiny, Property(3, 96, 96))
    _error(tiny, r"train.rec: images are 112x112 but property says 96x96")


def test_missing_or_bad_property(tiny):
    prop = os.path.join(tiny, "property")
    with open(prop, "w") as f:
        f.write("85742;112;112\n")
    _error(tiny, r"property: expected 'num_classes,H,W'")
    os.unlink(prop)
    _error(tiny, r"property: missing")


def test_identity_range_outside_file(tmp_path):
    mx = pytest.importorskip("mxnet")
    out = _legacy_write(str(tmp_path / "d"), [(0, 2), (1, 2)])
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, "train.idx"), os.path.join(out, "train.rec"), "r")
    records = {k: rec.read_idx(k) for k in rec.keys}
    rec.close()
    records[6] = mx.recordio.pack(mx.recordio.IRHeader(0, [3, 40], 0, 0), b"")
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, "train.idx"), os.path.join(out, "train.rec"), "w")
    for k in sorted(records):
        rec.write_idx(k, records[k])
    rec.close()
    _error(out, r"train.rec: record 6: identity range \[3, 40\) is outside the image records \[1, 5\)")


def test_header_range_outside_file(tiny):
    # header0 says identity records run to key 20, but the file ends at key 9
    _patch(os.path.join(tiny, "train.rec"), 8 + 24 + 4, struct.pack("<f", 20.0))
    _error(tiny, r"record 0: identity range \[7, 20\) is outside the file")


def test_labels_that_do_not_follow_identity_order(tmp_path):
    # identity records in the order 2, 0, 1: the probe notices and every identity's label is read
    ds = FaceRecordDataset(_legacy_write(str(tmp_path / "d"), [(2, 2), (0, 3), (1, 1)]))
    assert ds.labels.tolist() == [2, 2, 0, 0, 0, 1]
    assert ds.identity_positions(0).tolist() == [2, 3, 4] and ds.identity_positions(2).tolist() == [0, 1]
    assert ds.identity_counts().tolist() == [3, 1, 2]


def test_concurrent_reads_from_threads(tiny):
    from concurrent.futures import ThreadPoolExecutor

    ds = FaceRecordDataset(tiny)
    expected = [ds.read(i) for i in range(len(ds))]
    order = np.random.default_rng(0).integers(0, len(ds), 400).tolist()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ds.read, order))
    assert got == [expected[i] for i in order]
