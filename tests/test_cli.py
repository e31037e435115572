"""The headless command: real MNIST, real run directory, no Qt."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import format_duration, parse_options, train_command

REPO = Path(__file__).resolve().parents[1]


def test_train_prints_psnr_and_writes_a_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = train_command(
        [
            "--dataset",
            "mnist",
            "--bottleneck",
            "16",
            "--epochs",
            "1",
            "--train-limit",
            "1000",
            "--test-limit",
            "300",
            "--run-dir",
            str(run_dir),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "test PSNR" in captured.out
    assert " dB" in captured.out
    assert "epoch 1:" in captured.err
    config = json.loads((run_dir / "config.json").read_text())
    assert config["bottleneck"] == "16"
    assert config["train_limit"] == 1000
    assert (run_dir / "checkpoint.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_extends_a_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    common = ["--train-limit", "500", "--test-limit", "200", "--quiet"]
    assert train_command(["--epochs", "1", "--run-dir", str(run_dir), *common]) == 0
    assert train_command(["--epochs", "2", "--resume", str(run_dir)]) == 0
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert "Finished 2 epochs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bottleneck", "0x1x1"], "zero dimension"),
        (["--bottleneck", "banana"], "CxHxW"),
        (["--epochs", "0"], "epochs (--epochs) must be at least 1"),
        (["--dataset", "no/such/folder"], "no/such/folder"),
        (["--resume", "/nonexistent/run"], "not a run directory"),
        (["--option", "novalue"], "KEY=VALUE"),
        (["--option", "foo=1"], "no option 'foo'; valid options are"),
        (["--dataset", "cifar10", "--data-root", "/nonexistent"], "--no-download"),
    ],
)
def test_bad_values_exit_with_a_message(tmp_path, capsys, args, message):
    code = train_command([*args, "--runs", str(tmp_path), "--no-download"])
    assert code == 2
    assert message in capsys.readouterr().err
    # No empty run directory is left behind.
    assert list(tmp_path.iterdir()) == []


def test_mistyped_command_is_not_opened_as_a_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "explorer", "trian"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    assert "'trian' is neither a command ('train') nor a run directory" in (
        result.stderr
    )


def test_option_values_are_typed():
    options = parse_options(["a=3", "b=0.5", "c=true", "d=masked"])
    assert options == {"a": 3, "b": 0.5, "c": True, "d": "masked"}


def test_durations_are_readable():
    assert format_duration(0) == "0:00"
    assert format_duration(75.4) == "1:15"
    assert format_duration(3725) == "1:02:05"


def test_headless_command_never_imports_qt(tmp_path):
    script = (
        "import sys\n"
        "from explorer.launcher import main\n"
        f"code = main(['train', '--epochs', '1', '--train-limit', '200',"
        f" '--test-limit', '100', '--quiet', '--run-dir', {str(tmp_path)!r}])\n"
        "assert code == 0, code\n"
        "assert not [m for m in sys.modules if m.startswith('PySide6')]\n"
        "assert 'pyqtgraph' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_qt():
    qt = {"PySide6", "PyQt5", "PyQt6", "pyqtgraph", "explorer"}
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & qt)
        for path in (REPO / "core").rglob("*.py")
        if imported_modules(path) & qt
    }
    assert offenders == {}
