"""PyTorch state dicts read without PyTorch: real files, files written here, and what must be refused."""
import os
import pickle
import zipfile

import numpy as np
import pytest

from _torchfile import write_pth
from insightgluon.convert.pth import read_state_dict
from insightgluon.errors import CheckpointError

DATA = os.path.join(os.path.dirname(__file__), "data", "torch")


@pytest.mark.parametrize("name", ["small_zip.pth", "small_legacy.pth"])
def test_files_written_by_pytorch(name):
    want = np.load(os.path.join(DATA, "small_expected.npz"))
    got = read_state_dict(os.path.join(DATA, name))
    assert list(got) == list(want.files)  # file order; the zip one had a module. prefix in a checkpoint dict
    for key in want.files:
        np.testing.assert_array_equal(got[key], want[key])
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
    assert got["1.num_batches_tracked"].dtype == np.int64 and got["half"].dtype == np.float16
    assert got["bf16"].tolist() == [1.5, -2.25] and got["view"].tolist() == [[1, 5, 9], [2, 6, 10], [3, 7, 11]]


def test_a_pickled_module_is_refused_with_its_name():
    with pytest.raises(CheckpointError, match=r"small_module.pth: refusing to unpickle "
                                              r"torch\.nn\.modules\.container\.Sequential: a state dict holds"):
        read_state_dict(os.path.join(DATA, "small_module.pth"))


@pytest.mark.parametrize("legacy", [False, True])
def test_written_here_and_read_back(tmp_path, legacy):
    rng = np.random.default_rng(0)
    state = {"conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
             "bn.num_batches_tracked": np.array(7, dtype=np.int64),
             "fc.weight": rng.normal(size=(5, 2)).astype(np.float16), "mask": np.array([True, False])}
    for wrap in (None, "state_dict_backbone"):
        path = write_pth(str(tmp_path / f"m-{wrap}.pth"), state, legacy=legacy, wrap=wrap)
        got = read_state_dict(path)
        assert list(got) == list(state)
        for key, value in state.items():
            np.testing.assert_array_equal(got[key], value)
            assert got[key].dtype == value.dtype


def test_foreign_globals_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = str(tmp_path / "evil.pth")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"evil.pth: refusing to unpickle (posix|os)\.system"):
        read_state_dict(path)
    assert not marker.exists()


def test_bad_files_say_what_is_wrong(tmp_path):
    cases = []
    (tmp_path / "junk.pth").write_bytes(os.urandom(64))
    cases.append(("junk.pth", "not a PyTorch file"))
    with zipfile.ZipFile(tmp_path / "nopkl.pth", "w") as archive:
        archive.writestr("archive/version", "3")
    cases.append(("nopkl.pth", "a zip archive without one data.pkl"))
    path = write_pth(str(tmp_path / "nostorage.pth"), {"w": np.ones(3, np.float32)})
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / "cut.pth", "w") as dst:
        for item in src.namelist():
            if "/data/" not in item:
                dst.writestr(item, src.read(item))
    cases.append(("cut.pth", "storage 0 is missing from the archive"))
    legacy = write_pth(str(tmp_path / "legacy.pth"), {"w": np.ones(300, np.float32)}, legacy=True)
    (tmp_path / "short.pth").write_bytes(open(legacy, "rb").read()[:-100])
    cases.append(("short.pth", "ends inside storage 0"))
    with zipfile.ZipFile(tmp_path / "plain.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"epoch": 3, "lr": 0.1}, protocol=2))
    cases.append(("plain.pth", "holds no state dict"))
    cases.append(("missing.pth", "no such file"))
    for name, message in cases:
        with pytest.raises(CheckpointError, match=f"{name}: {message}"):
            read_state_dict(str(tmp_path / name))
