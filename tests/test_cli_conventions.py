"""CLI conventions: one spelling of --out, progress bars only on a terminal, the README's
``onespike.evaluate`` import."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from onespike import extract, normalize
from onespike._progress import Stage
from onespike.cli import main
from onespike.graph import Graph


def _invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_export_help_names_out_and_hides_the_old_spelling() -> None:
    code, output = _invoke(["export", "--help"])
    assert code == 0, output
    assert "--out PATH" in output
    assert "--output" not in output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits MLP trained for one epoch: the model ``evaluate``, ``hardware`` and
    ``export`` need."""
    out = tmp_path_factory.mktemp("trained")
    code, output = _invoke(["train", "--dataset", "digits", "--epochs", "1", "--out", str(out)])
    assert code == 0, output
    return out / "model"


@pytest.mark.parametrize("spelling", ["--out", "--output"])
def test_export_out_and_its_alias_reach_the_same_check(
    spelling: str, trained: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = _invoke(["export", "--model-file", str(trained), spelling, f"{blocker}/net.nir"])
    assert code == 2, output
    assert "the directory of --out" in output  # the message names the current spelling
    assert "--output" not in output


def test_export_alias_still_parses_as_an_option() -> None:
    code, output = _invoke(["export", "--output"])
    assert code == 2, output
    assert "Option '--output' requires an argument" in output  # parsed, not "no such option"


def _tiny_graph() -> tuple[Graph, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU())
    images = torch.rand(8, 1, 2, 2)
    return extract(model.eval(), images[:2]), images


def test_off_a_terminal_a_stage_prints_one_summary_line_and_no_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    graph, images = _tiny_graph()
    capsys.readouterr()
    normalize(graph, [images[:4], images[4:]], progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err  # no bar redrawn (tqdm's disable=None off a terminal)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("normalize: 2 batches in ")
    assert lines[0].endswith(" s, 8 calibration samples")
    normalize(graph, [images], progress=False)
    assert capsys.readouterr().err == ""  # progress off (--quiet): neither bar nor line


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_stage_draws_its_bar_and_no_summary_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph, images = _tiny_graph()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    normalize(graph, [images[:4], images[4:]], progress=True)
    drawn = terminal.getvalue()
    assert "normalize: 100%" in drawn  # tqdm's bar
    assert "calibration samples" not in drawn


def test_a_stage_that_fails_prints_no_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()

    def fail() -> None:
        with Stage("work", total=3, unit="batch") as bar:
            bar.update(1)
            raise RuntimeError("broke")

    with pytest.raises(RuntimeError, match="broke"):
        fail()
    assert capsys.readouterr().err == ""
    with Stage("work", total=1, unit="img") as bar:
        bar.update(1)
    assert capsys.readouterr().err.startswith("work: 1 image in ")


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
    stages = ("loading digits", "epoch 1/1: ", "saved ", "normalize: ", "simulate (closed_form): ")
    for stage in (*stages, "results written to"):
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


@pytest.mark.parametrize("command", ["run", "evaluate", "hardware", "export"])
def test_every_converting_command_defaults_to_rate(command: str) -> None:
    code, output = _invoke([command, "--help"])
    assert code == 0, output
    method = output[output.index("--method") :]
    assert "[default: rate]" in " ".join(method.split()[:60]), (command, method[:400])


@pytest.mark.parametrize("command", ["evaluate", "hardware", "export"])
def test_commands_on_a_trained_model_list_no_training_options(command: str) -> None:
    code, output = _invoke([command, "--help"])
    assert code == 0, output
    for option in ("--epochs", "--lr", "--batch-size", "--model "):
        assert option not in output, (command, option)
    assert "--model-file" in output
    code, output = _invoke([command, "--dataset", "digits"])
    assert code == 2, output
    assert "Missing option '--model-file'" in output


@pytest.mark.parametrize("command", ["evaluate", "hardware", "export"])
def test_code_without_weights_is_refused_where_nothing_trains(command: str, tmp_path: Path) -> None:
    source = tmp_path / "net.py"
    source.write_text("import torch\nNet = lambda: torch.nn.Linear(64, 10)\n")
    code, output = _invoke([command, "--dataset", "digits", "--model-file", f"{source}:Net"])
    assert code == 2, output
    assert f"{command} works on a trained model" in output
    assert "--weights" in output


def test_the_default_export_is_the_default_runs_method(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "net.nir"
    code, output = _invoke(
        ["export", "--model-file", str(trained), "--steps", "8", "--limit", "30", "--out", str(out)]
    )
    assert code == 0, output
    assert out.exists()
    assert "rate with T=8" in output  # no --method given: the method run defaults to
    assert "exported network (NIR-exact): SNN test accuracy" in output
