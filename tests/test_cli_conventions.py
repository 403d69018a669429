"""CLI conventions: one spelling of --out, progress bars only on a terminal, the README's
``onespike.evaluate`` import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from onespike import extract, normalize
from onespike.cli import main


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_export_help_names_out_and_hides_the_old_spelling() -> None:
    code, output = _invoke(["export", "--help"])
    assert code == 0, output
    assert "--out PATH" in output
    assert "--output" not in output


@pytest.mark.parametrize("spelling", ["--out", "--output"])
def test_export_out_and_its_alias_reach_the_same_check(spelling: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = _invoke(["export", spelling, f"{blocker}/net.nir"])
    assert code == 2, output
    assert "the directory of --out" in output  # the message names the current spelling
    assert "--output" not in output


def test_export_alias_still_parses_as_an_option() -> None:
    code, output = _invoke(["export", "--output"])
    assert code == 2, output
    assert "Option '--output' requires an argument" in output  # parsed, not "no such option"


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU())
    images = torch.rand(8, 1, 2, 2)
    graph = extract(model.eval(), images[:2])
    capsys.readouterr()
    normalize(graph, [images[:4], images[4:]], progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "normalize" not in err  # tqdm's bar, disabled off a terminal (disable=None)


def test_onespike_evaluate_is_reachable_from_the_package_alone() -> None:
    code = "import onespike; print(onespike.evaluate.evaluate_snn.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "evaluate_snn"
