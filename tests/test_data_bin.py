"""``.bin`` packs: round trip, Python 2 pickles, plain pickle readers and hostile files."""
import os
import pickle
import pickletools

import numpy as np
import pytest

from _datautil import make_tiny_bin, tiny_face
from insightgluon.data.bin import decode_bin, load_bin, save_bin
from insightgluon.data.image import encode_jpeg
from insightgluon.errors import DataFormatError


def test_round_trip_and_plain_pickle(tmp_path):
    path = make_tiny_bin(tmp_path / "lfw.bin", num_pairs=3)
    bins, issame = load_bin(path)
    assert len(bins) == 6 and issame.dtype == np.bool_ and issame.tolist() == [True, False, True]
    with open(path, "rb") as f:  # the legacy reader (REFERENCE §2.2)
        plain_bins, plain_same = pickle.load(f, encoding="bytes")
    assert plain_bins == bins and plain_same == [True, False, True]
    images, same = decode_bin(path)
    assert images.shape == (6, 112, 112, 3) and images.dtype == np.uint8 and same.tolist() == issame.tolist()
    small, _ = decode_bin(path, image_size=(56, 48))
    assert small.shape == (6, 56, 48, 3)


def test_python2_pickle(tmp_path):
    # Python 2 protocol 2 pickles a str with SHORT_BINSTRING ('U'); lfw2pack wrote exactly this shape.
    jpeg = encode_jpeg(tiny_face(1))
    assert len(jpeg) > 255
    body = b"".join(b"T" + len(jpeg).to_bytes(4, "little") + jpeg for _ in range(2))  # BINSTRING
    data = b"\x80\x02]q\x00(" + body + b"e]q\x01(\x88e\x86q\x02."
    pickletools.dis(data, out=open(os.devnull, "w"))  # well-formed
    path = tmp_path / "py2.bin"
    path.write_bytes(data)
    bins, issame = load_bin(str(path))
    assert bins == [jpeg, jpeg] and issame.tolist() == [True]


def test_numpy_bool_issame_and_py3_protocol2(tmp_path):
    jpeg = encode_jpeg(tiny_face(2))
    path = tmp_path / "np.bin"
    with open(path, "wb") as f:  # protocol 2 in Python 3 stores bytes via _codecs.encode
        pickle.dump(([jpeg] * 4, np.array([True, False])), f, protocol=2)
    bins, issame = load_bin(str(path))
    assert bins == [jpeg] * 4 and issame.tolist() == [True, False]


class _Call:
    """Pickles as a call of ``fn(*args)``: what a hostile .bin does."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("payload,match", [
    (([b"x", b"y"], [_Call(os.system, ("touch pwned",))]), r"evil.bin: refused to unpickle: it references posix.system"),
    (_Call(eval, ("open('pwned', 'w')",)), r"evil.bin: refused to unpickle: it references builtins.eval"),
])
def test_malicious_bin_is_rejected(tmp_path, monkeypatch, payload, match):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataFormatError, match=match):
        load_bin(str(path))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("obj,match", [
    ("just text", r"expected a pickled \(bins, issame_list\) pair, got str"),
    (([b"a", b"b", b"c"], [True]), r"3 images but 1 pairs"),
    (([b"a", 7], [True]), r"bins\[1\] is int, not image bytes"),
    (([b"a", b"b"], [1]), r"issame_list\[0\] is int, not a boolean"),
    (([b"a", b"b"], np.array([1.0])), r"issame_list must hold booleans"),
])
def test_wrong_structure(tmp_path, obj, match):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(DataFormatError, match=match):
        load_bin(str(path))


def test_not_a_pickle_and_missing(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\x89PNG not a pickle")
    with pytest.raises(DataFormatError, match=r"junk.bin: not a .bin pickle"):
        load_bin(str(path))
    with pytest.raises(DataFormatError, match=r"nope.bin: no such .bin file"):
        load_bin(str(tmp_path / "nope.bin"))


def test_undecodable_image_in_bin(tmp_path):
    path = str(tmp_path / "broken.bin")
    save_bin(path, [encode_jpeg(tiny_face(0)), b"garbage"], [True])
    with pytest.raises(DataFormatError, match=r"broken.bin: image 1: image data does not decode"):
        decode_bin(path)


def test_save_bin_checks_counts_and_is_atomic(tmp_path):
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        save_bin(str(tmp_path / "x.bin"), [b"a", b"b", b"c"], [True])
    assert os.listdir(tmp_path) == []
