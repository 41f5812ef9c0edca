"""The registry, the model-spec parser and the command-line dispatcher."""
import pytest

from insightgluon.cli import SUBCOMMANDS, main
from insightgluon.errors import CheckpointError, ConfigError
from insightgluon.model_io import parse_model_spec
from insightgluon.registry import Registry


def test_registry_register_get_and_unknown_name_lists_choices():
    reg = Registry("widget")

    @reg.register()
    def alpha():
        return "a"

    @reg.register("beta", "b")
    def make_beta():
        return "b"

    assert reg.get("alpha")() == "a" and reg.get("b") is make_beta
    assert reg.names() == ["alpha", "b", "beta"] and "beta" in reg and len(reg) == 3
    with pytest.raises(ConfigError, match="unknown widget 'gamma'; choose one of: alpha, b, beta"):
        reg.get("gamma")
    with pytest.raises(KeyError, match="registered twice"):
        reg.register("alpha")(lambda: None)


def test_parse_model_spec():
    assert parse_model_spec("model/r100,1") == [("model/r100", 1)]
    assert parse_model_spec("a,b,2|c,10") == [("a,b", 2), ("c", 10)]
    for bad in ("model", "model,", ",3", "m,x", ""):
        with pytest.raises(CheckpointError, match="expected 'prefix,epoch'"):
            parse_model_spec(bad)


def test_every_subcommand_module_exists_and_has_main():
    import importlib

    for module, _ in SUBCOMMANDS.values():
        assert callable(importlib.import_module(f"insightgluon.cli.{module}").main)


def test_unknown_subcommand_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-tool"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_scripts_report_bad_input_as_one_line(tmp_path, monkeypatch, caplog):
    from importlib.metadata import entry_points

    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("insightgluon")}
    assert set(scripts) == {"insightgluon", "train_softmax"}
    monkeypatch.setattr("sys.argv", ["train_softmax", "--data-dir", str(tmp_path / "missing"), "--dry-run"])
    assert scripts["train_softmax"].load()() == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "missing" in errors[0]


def test_help_lists_subcommands_one_per_line_in_groups_and_ends_with_the_first_commands(capsys):
    from insightgluon.cli import GROUPS

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for group in ("data:", "training:", "evaluation:", "deployment:"):
        assert group in lines
    for name, (_, description) in SUBCOMMANDS.items():
        assert sum(line.split()[:1] == [name] and description in line for line in lines) == 1, name
    assert sorted(n for names in GROUPS.values() for n in names) == sorted(SUBCOMMANDS)
    assert [line.split("#")[0].strip() for line in lines[-2:]] == ["make demo", "make test"]
