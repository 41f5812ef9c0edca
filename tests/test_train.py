"""The training driver end to end on tiny data: every loss, checkpoints, resume, NaN, devices."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from _datautil import make_tiny_bin, make_tiny_dataset
from insightgluon.cli.train import main as train_main
from insightgluon.cli.train import parse_config
from insightgluon.errors import CheckpointError
from insightgluon.train import checkpoint as ckpt
from insightgluon.train import train
from insightgluon.train.callbacks import NonFiniteLossError

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 32  # r18 with an 'E' head accepts any input size; 32x32 keeps every step cheap
TINY = ["--network", "r18", "--version-multiplier", "0.125", "--emb-size", "16", "--image-size", f"{SIZE},{SIZE}",
        "--per-batch-size", "8", "--lr", "0.05", "--lr-steps", "1000", "--frequent", "1", "--verbose", "1000",
        "--ckpt", "0", "--data-workers", "0", "--tensorboard", "0", "--target", "lfw", "--margin-s", "16",
        "--rand-mirror", "0"]  # augmentation is exercised by the resume test


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    out = make_tiny_dataset(root, num_ids=4, per_id=6, size=SIZE)
    make_tiny_bin(os.path.join(out, "lfw.bin"), num_pairs=10, size=SIZE)
    return out


def _run(data_dir, prefix, *extra):
    cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(prefix), *TINY, *extra])
    return train(cfg.resolve(env={}))


def _params(state_file):
    arrays, meta = ckpt.load_state(state_file)
    return {k: v for k, v in arrays.items() if k.startswith("param/")}, meta


@pytest.mark.parametrize("loss", ["0", "1", "2", "4", "5", "12"])
def test_every_loss_type_trains_and_loss_decreases(data_dir, tmp_path, loss):
    extra = ["--per-batch-size", "12", "--images-per-identity", "3"] if loss == "12" else []
    result = _run(data_dir, tmp_path / "m", "--loss-type", loss, "--max-steps", "12", "--dry-run", *extra)
    losses = [h["loss"] for h in result.history]
    assert result.steps == 12 and len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert os.listdir(tmp_path) == []  # dry run: parameter-adjustment mode writes nothing


@pytest.mark.parametrize("loss, extra, sampled", [
    ("sv-softmax", [], None), ("am-focal", [], None), ("li-arcface", [], None),
    ("magface", ["--magface-ua", "60", "--magface-lambda", "5"], None),
    ("arcface", ["--sample-rate", "0.5"], 2), ("partial-fc", [], 1)])
def test_new_losses_train_with_their_flags(data_dir, tmp_path, monkeypatch, loss, extra, sampled):
    from insightgluon.losses import PartialFCHead

    heads = []
    monkeypatch.setattr(PartialFCHead, "set_step", lambda self, step: heads.append(self.num_sample))
    result = _run(data_dir, tmp_path / "m", "--loss-type", loss, "--max-steps", "4", "--dry-run", *extra)
    assert result.steps == 4 and all(np.isfinite(h["loss"]) and 0.0 <= h["acc"] <= 1.0 for h in result.history)
    # --sample-rate 0 keeps each loss's own default: 0.1 of 4 classes (one centre) for partial-fc
    assert set(heads) == (set() if sampled is None else {sampled})


def test_checkpoints_legacy_lines_and_export(data_dir, tmp_path, caplog):
    import mxnet as mx

    from insightgluon.model_io import load_symbol_block

    caplog.set_level("INFO")
    prefix = tmp_path / "always" / "model"
    result = _run(data_dir, prefix, "--ckpt", "2", "--verbose", "2", "--max-steps", "4", "--tensorboard", "1",
                  "--ce-loss", "--verify-first")
    assert [v["step"] for v in result.verification] == [0, 2, 4]
    assert sorted(os.path.basename(p) for p in result.saved) == ["model-0001.params", "model-0002.params"]
    text = caplog.text
    assert all(np.isfinite(h["lossvalue"]) for h in result.history)
    for line in ("[lfw][2]XNorm: ", "[lfw][4]Accuracy-Flip: ", "[4]Accuracy-Highest: ", "Speed: ", "lossvalue="):
        assert line in text
    block = load_symbol_block(str(prefix), 2, "fc1")
    assert block(mx.nd.zeros((2, 3, SIZE, SIZE))).shape == (2, 16)
    assert os.path.isfile(f"{prefix}-config.yml") and os.path.isfile(f"{prefix}-train.log")
    assert any(f.startswith("events.out") for f in os.listdir(tmp_path / "always" / "tensorboard" / "model"))
    never = _run(data_dir, tmp_path / "never" / "m", "--ckpt", "0", "--verbose", "2", "--max-steps", "4")
    assert never.saved == [] and not any(f.endswith(".params") for f in os.listdir(tmp_path / "never"))
    three = _run(data_dir, tmp_path / "three" / "m", "--ckpt", "3", "--verbose", "1", "--max-steps", "4")
    assert {os.path.basename(p) for p in three.saved} == {"m-0001.params"}
    assert sorted(f for f in os.listdir(tmp_path / "three") if f.endswith(".params")) == ["m-0001.params"]


def test_pretrained_and_bad_inputs(data_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    prefix = tmp_path / "a" / "m"
    _run(data_dir, prefix, "--ckpt", "2", "--verbose", "2", "--max-steps", "2")
    _run(data_dir, tmp_path / "b" / "m", "--pretrained", f"{prefix},1", "--max-steps", "1", "--dry-run")
    assert "loaded" in caplog.text
    with pytest.raises(CheckpointError, match=r"m-0009\.params: --pretrained checkpoint not found"):
        _run(data_dir, tmp_path / "c" / "m", "--pretrained", f"{prefix},9", "--max-steps", "1")
    with pytest.raises(CheckpointError, match="no such training state"):
        _run(data_dir, tmp_path / "c" / "m", "--resume", str(tmp_path / "nothing.state"), "--max-steps", "1")
    with pytest.raises(CheckpointError, match="saved with emb_size=16, this run has emb_size=32"):
        _run(data_dir, prefix, "--resume", "--emb-size", "32", "--max-steps", "3")


def test_nan_loss_stops_and_keeps_last_state(data_dir, tmp_path):
    prefix = tmp_path / "m"
    with pytest.raises(NonFiniteLossError, match=r"batch \d+: .*(NaN|inf|nan)"):
        _run(data_dir, prefix, "--loss-type", "0", "--lr", "1e12", "--state-every", "1", "--max-steps", "50")
    state = ckpt.state_path(str(prefix))
    if os.path.exists(state):  # the last state written before the divergence is whole and finite
        params, meta = _params(state)
        assert all(np.isfinite(v).all() for v in params.values()) and meta["step"] >= 1


def test_cli_reports_nan_as_one_line(data_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "insightgluon", "train", "--data-dir", data_dir, "--prefix",
                           str(tmp_path / "m"), *TINY, "--loss-type", "0", "--lr", "1e12", "--max-steps", "50",
                           "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if "ERROR" in l]
    assert len(errors) == 1 and "training loss is" in errors[0] and "Traceback" not in proc.stderr


def test_two_contexts_stay_identical(data_dir, tmp_path):
    from insightgluon.train.loop import Session

    cfg, _ = parse_config(["--data-dir", data_dir, "--prefix", str(tmp_path / "m"), *TINY, "--ctx", "cpu:2",
                           "--per-batch-size", "4", "--max-steps", "6", "--dry-run"])
    session = Session(cfg.resolve(env={}))
    result = session.run()
    assert result.steps == 6
    for name, param in session.model.params.items():
        if param.grad_req != "null":
            a, b = (param.data(c).asnumpy() for c in session.model.ctx)
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(data_dir, tmp_path):
    common = ["--data-dir", data_dir, *TINY, "--rand-mirror", "1", "--state-every", "3", "--seed", "7"]
    reference = _run(data_dir, tmp_path / "ref" / "m", *common[2:], "--max-steps", "12")
    prefix = tmp_path / "killed" / "m"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Killed by its own hand after batch 7 (the state of batch 6 on disk), wherever the machine's speed
    # would have put a signal from outside; it decodes in a worker process, the reference in-process.
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_killed_at.py"), "7", "train", *common,
                           "--prefix", str(prefix), "--max-steps", "100000", "--data-workers", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _params(ckpt.state_path(str(prefix)))[1]["step"] == 6
    resumed = _run(data_dir, prefix, *common[2:], "--max-steps", "12", "--resume")
    assert resumed.steps == 12
    ref, _ = _params(reference.state_file)
    got, meta = _params(resumed.state_file)
    assert meta["step"] == 12 and ref.keys() == got.keys()
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_dist_sync_loopback_matches_single_process(data_dir, tmp_path):
    args = ["--data-dir", data_dir, *TINY, "--per-batch-size", "4", "--max-steps", "5", "--lr-steps", "3",
            "--warmup-steps", "2"]  # the schedule must reach the servers
    single = _run(data_dir, tmp_path / "single" / "m", *args[2:], "--ctx", "cpu:2")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "insightgluon", "train", *args, "--prefix",
                           str(tmp_path / "dist" / "m"), "--launch-dist", "2"],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = [float(l.rsplit(" ", 1)[1]) for l in proc.stderr.splitlines() if "parameter checksum" in l]
    assert len(sums) == 2 and sums[0] == sums[1]  # both workers end with the same parameters
    ref, _ = _params(single.state_file)
    got, meta = _params(ckpt.state_path(str(tmp_path / "dist" / "m")))
    assert meta["step"] == 5 and "trainer" in ckpt.load_state(single.state_file)[0]
    for name in ref:
        if "moving" in name or "running" in name:
            continue  # batch-norm statistics are per worker (rank 0's are saved)
        # the servers sum the gradients in their own float order: equal within rounding, not bit for bit
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=5e-4, err_msg=name)


def test_end_epoch_stops_at_the_epoch_boundary(data_dir, tmp_path):
    result = _run(data_dir, tmp_path / "m", "--end-epoch", "2", "--dry-run")  # 24 images / 8 = 3 per epoch
    assert (result.steps, result.epoch) == (6, 1)


def test_cli_main_and_help(data_dir, tmp_path, capsys):
    assert train_main(["--data-dir", data_dir, "--prefix", str(tmp_path / "m"), *TINY, "--max-steps", "2",
                       "--dry-run"]) == 0
    with pytest.raises(SystemExit):
        train_main(["--help"])
    out = capsys.readouterr().out
    assert "--per-batch-size" in out and "margins and losses:" in out and "--launch-dist" in out


@pytest.mark.parametrize("steps, written", [(4, [2, 4]), (3, [2, 3])])
def test_state_is_written_every_verbose_batches_and_at_the_end_once(data_dir, tmp_path, monkeypatch, steps,
                                                                   written):
    saved = []
    save_state = ckpt.save_state
    monkeypatch.setattr(ckpt, "save_state", lambda path, arrays, meta: (saved.append(meta["step"]),
                                                                        save_state(path, arrays, meta)))
    result = _run(data_dir, tmp_path / "m", "--verbose", "2", "--max-steps", str(steps))
    assert saved == written and _params(result.state_file)[1]["step"] == steps
