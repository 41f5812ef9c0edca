"""``insightgluon demo`` on a miniature synthetic dataset: data, training, the report."""
import os

from insightgluon.cli.demo import main


def test_demo_writes_data_model_and_report(tmp_path, capsys, caplog):
    caplog.set_level("INFO")  # the CLI entry point configures INFO logging; here pytest does
    out = tmp_path / "demo"
    code = main(["--output", str(out), "--max-steps", "3", "--num-ids", "4", "--imgs-per-id", "8",
                 "--pairs-per-bin", "20"])
    report = capsys.readouterr().out
    assert "did NOT reach 0.95" in report and code == 1
    assert "batch     0:" in report and "tensorboard --logdir" in report
    assert os.path.isfile(out / "data" / "lfw.bin") and os.path.isfile(out / "model" / "demo-train.state")
    assert os.path.isfile(out / "model" / "demo-config.yml")
    # a second run reuses the dataset and resumes where the first stopped
    assert main(["--output", str(out), "--max-steps", "4", "--resume", "--num-ids", "4"]) == 1
    assert "already there" not in capsys.readouterr().out  # logged, not printed
    assert "resumed from" in open(out / "model" / "demo-train.log").read()
