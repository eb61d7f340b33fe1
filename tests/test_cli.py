"""The `landsentry` dispatcher: help, unknown commands, and subcommand help."""
from __future__ import annotations

from landsentry.cli import COMMANDS


def test_help_lists_the_commands(cli):
    code, out, err = cli(["--help"])
    assert code == 0 and err == ""
    assert out.startswith("usage: landsentry COMMAND")
    for name in COMMANDS:
        assert f"  {name} " in out
    assert "predict" in out


def test_no_arguments_prints_usage_and_fails(cli):
    code, out, _ = cli([])
    assert code == 2 and "usage: landsentry COMMAND" in out


def test_unknown_command(cli):
    code, out, err = cli(["frobnicate"])
    assert code == 2 and out == ""
    assert "unknown command 'frobnicate'" in err and "predict" in err


def test_predict_help(cli):
    code, out, _ = cli(["predict", "--help"])
    assert code == 0
    for option in ("--outdir", "--checkpoint", "--gsd", "--bands", "--min-area", "--wgs84", "--tile", "--overlap"):
        assert option in out


def test_predict_usage_errors_exit_2(cli, tmp_path):
    code, _, err = cli(["predict", str(tmp_path / "x.png")])  # -o is required
    assert code == 2 and "--outdir" in err
    code, _, err = cli(["predict", str(tmp_path / "x.png"), "-o", str(tmp_path), "--tile", "100"])
    assert code == 2 and "--tile must be a multiple of 32" in err and "Traceback" not in err
    code, _, err = cli(["predict", str(tmp_path / "x.png"), "-o", str(tmp_path), "--gsd", "-1"])
    assert code == 2 and "--gsd must be a positive" in err

