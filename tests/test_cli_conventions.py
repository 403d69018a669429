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


def _run_args(out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--method",
        "ttfs",
        "--steps",
        "4",
        "--limit",
        "40",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("command", ["train", "run", "evaluate", "hardware", "export"])
def test_every_computing_command_takes_threads_device_quiet_and_max_steps(command: str) -> None:
    code, output = _invoke([command, "--help"])
    assert code == 0, output
    for option in ("--threads", "--device", "--quiet", "--max-steps"):
        assert option in output, (command, option)


def test_threads_sets_torchs_thread_count(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 1
    try:
        code, output = _invoke(_run_args(tmp_path, "--threads", str(wanted), "--quiet"))
        assert code == 0, output
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_quiet_drops_stage_lines_and_keeps_results(tmp_path: Path) -> None:
    code, loud = _invoke(_run_args(tmp_path / "loud", "--device", "cpu"))
    assert code == 0, loud
    code, quiet = _invoke(_run_args(tmp_path / "quiet", "--device", "cpu", "--quiet"))
    assert code == 0, quiet
    for stage in ("loading digits", "saved ", "results written to"):
        assert stage in loud
        assert stage not in quiet
    # the results table is printed either way, with the same accuracy lines
    table = [line for line in loud.splitlines() if line.startswith(("ANN accuracy", "SNN acc"))]
    assert len(table) == 2
    assert all(line in quiet.splitlines() for line in table)


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("banana", "is not a device; use cpu, cuda or cuda:N"),
        ("mps", "onespike runs on cpu or cuda, not mps"),
    ],
)
def test_a_bad_device_is_refused_before_any_work(device: str, message: str, tmp_path: Path) -> None:
    code, output = _invoke(_run_args(tmp_path, "--device", device))
    assert code == 2, output
    assert message in output
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_names_the_fix(tmp_path: Path) -> None:
    code, output = _invoke(_run_args(tmp_path, "--device", "cuda:0"))
    assert code == 2, output
    assert "sees no CUDA device; use --device cpu" in output


def test_max_steps_bounds_steps_and_raises_on_request(tmp_path: Path) -> None:
    code, output = _invoke(_run_args(tmp_path / "a", "--max-steps", "3", "--quiet"))
    assert code == 1, output
    assert "steps=4 is above max_steps=3" in output
    assert "--max-steps 4" in output  # the fix a command-line user can type
    code, output = _invoke(_run_args(tmp_path / "b", "--max-steps", "4", "--quiet"))
    assert code == 0, output
