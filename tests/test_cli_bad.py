"""Bad input on the command line: every case gives a usage error (exit 2) or a named
OnespikeError (exit 1) naming the conflict, with no traceback and nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onespike.cli import main
from tests import zoo

ZOO = f"{Path(zoo.__file__)}:MixedCNN"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A digits MLP trained here (with its held-out split) and its TTFS-aware fine-tuning."""
    out = tmp_path_factory.mktemp("trained")
    args = ["train", "--dataset", "digits", "--epochs", "2", "--ttfs-aware", "--steps", "4"]
    args += ["--finetune-epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return {"model": out / "model", "ttfs": out / "model-ttfs", "run": out}


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


def _check_refused(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )  # a usage error or a named OnespikeError, never a raw traceback
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def _fill(args: list[str], models: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in models.items()}, zoo=ZOO) for a in args]


def _trained(args: list[str], models: dict[str, Path]) -> list[str]:
    """``args`` with the trained digits model added where the command works on one only."""
    if args[0] in ("evaluate", "hardware", "export") and "--model-file" not in args:
        return [args[0], "--model-file", str(models["model"]), *args[1:]]
    return args


# ---- 1. options that do not apply to the method or to the model source ------------------------
# (name, arguments, what the message must say); every one exits 2 before any work.
CONFLICTS = [
    ("run ttfs + input-code", ["run", "--method", "ttfs", "--input-code", "poisson"],
     ["--input-code applies to --method rate only, not to --method ttfs"]),
    ("run ttfs + reset", ["run", "--method", "ttfs", "--reset", "zero"],
     ["--reset applies to --method rate only, not to --method ttfs"]),
    ("run default rate + no-rectifier", ["run", "--no-rectifier"],
     ["--no-rectifier applies to --method ttfs only", "--method rate (the default)"]),
    ("run rate + no-rectifier", ["run", "--method", "rate", "--no-rectifier"],
     ["--no-rectifier applies to --method ttfs only, not to --method rate"]),
    ("run rate + leak + readout", ["run", "--method", "rate", "--leak", "0.9", "--readout",
     "first_spike"], ["--leak applies to --method hybrid only", "--readout applies"]),
    ("run hybrid + early-exit", ["run", "--method", "hybrid", "--early-exit", "2"],
     ["--early-exit applies to --method rate only, not to --method hybrid"]),
    ("run hybrid + dither", ["run", "--method", "hybrid", "--dither", "0.1"],
     ["--dither applies to --method rate only"]),
    ("run rate + threshold-init", ["run", "--threshold-init", "0.5"],
     ["--threshold-init applies to --method hybrid only"]),
    ("run rate + target-accuracy", ["run", "--method", "rate", "--target-accuracy", "0.9"],
     ["--target-accuracy applies to --method ttfs only"]),
    ("run model-file + model", ["run", "--model-file", "{model}", "--model", "vgg-small"],
     ["--model configure training"]),
    ("run trainable file.py + model", ["run", "--model-file", "{zoo}", "--model", "vgg-small"],
     ["--model names a built-in architecture", "drop one of them"]),
    ("run model-file + binary (ttfs)", ["run", "--model-file", "{model}", "--method", "ttfs",
     "--binary"], ["--binary does not apply to the trained model"]),
    ("run model-file + seed (ttfs)", ["run", "--model-file", "{model}", "--method", "ttfs",
     "--seed", "3"], ["--seed does not apply to the trained model"]),
    ("run digits + data-dir", ["run", "--data-dir", "/nonexistent"],
     ["--data-dir does not apply to --dataset digits"]),
    ("run digits + download", ["run", "--download"], ["--download does not apply"]),
    ("evaluate ttfs + reset", ["evaluate", "--model-file", "{model}", "--method", "ttfs",
     "--reset", "zero"], ["--reset applies to --method rate only"]),
    ("evaluate backend, one process", ["evaluate", "--model-file", "{model}", "--backend",
     "gloo"], ["--backend does not apply outside torchrun"]),
    ("evaluate ttfs + binary", ["evaluate", "--model-file", "{model}", "--method", "ttfs",
     "--binary"], ["--binary applies to --method rate only"]),
    ("evaluate without a model", ["evaluate"], ["Missing option '--model-file'"]),
    ("evaluate + epochs", ["evaluate", "--model-file", "{model}", "--epochs", "3"],
     ["No such option '--epochs'"]),
    ("hardware + lr", ["hardware", "--model-file", "{model}", "--lr", "0.1"],
     ["No such option '--lr'"]),
    ("export + model", ["export", "--model-file", "{model}", "--model", "mlp"],
     ["No such option '--model'"]),
    ("hardware without a model", ["hardware"], ["Missing option '--model-file'"]),
    ("evaluate code to train", ["evaluate", "--model-file", "{zoo}"],
     ["evaluate works on a trained model", "give its trained weights with --weights"]),
    ("export code to train", ["export", "--model-file", "{zoo}"],
     ["export works on a trained model", "onespike train --model-file"]),
    ("export ttfs + input-code", ["export", "--model-file", "{model}", "--method", "ttfs",
     "--input-code", "poisson"], ["--input-code applies to --method rate only"]),
    ("export rate (default) + readout", ["export", "--model-file", "{model}", "--readout",
     "first_spike"], ["--readout applies to --method hybrid only", "--method rate (the default)"]),
    ("export model-file + seed", ["export", "--model-file", "{model}", "--method", "ttfs",
     "--seed", "1"], ["--seed applies to --method rate only"]),
    ("hardware dense-ann + steps", ["hardware", "--model-file", "{model}", "--architecture",
     "dense-ann", "--steps", "8"], ["--steps does not apply to --architecture dense-ann"]),
    ("hardware dense-ann + seed", ["hardware", "--model-file", "{model}", "--architecture",
     "dense-ann", "--seed", "2"], ["--seed does not apply to --architecture dense-ann"]),
    ("hardware rate on the TTFS accelerator", ["hardware", "--model-file", "{model}",
     "--architecture", "ttfs-accelerator"], ["ttfs-accelerator runs single-spike TTFS"]),
    ("hardware rate + no-rectifier", ["hardware", "--model-file", "{model}", "--no-rectifier"],
     ["--no-rectifier applies to --method ttfs only", "--method rate (the default)"]),
    ("hardware ttfs + seed", ["hardware", "--model-file", "{model}", "--method", "ttfs",
     "--seed", "2"], ["--seed applies to --method rate only"]),
    ("train plain + steps", ["train", "--steps", "4"],
     ["--steps applies to --method hybrid or --ttfs-aware only", "plain training"]),
    ("train plain + finetune-lr", ["train", "--finetune-lr", "1e-3"],
     ["--finetune-lr applies to"]),
    ("train ttfs-aware + finetune-samples", ["train", "--ttfs-aware", "--steps", "4",
     "--finetune-samples", "10"], ["--finetune-samples applies to --method hybrid only"]),
    ("train model-file + binary", ["train", "--model-file", "{model}", "--ttfs-aware",
     "--steps", "4", "--binary"], ["--binary does not apply to the trained model"]),
    ("train digits + data-dir", ["train", "--data-dir", "/nonexistent"],
     ["--data-dir does not apply to --dataset digits"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "fragments"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
def test_options_that_do_not_apply_are_refused(
    name: str, args: list[str], fragments: list[str], models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    flag = "--out"
    target = out / "net.nir" if args[0] == "export" else out
    result = _invoke([*_fill(args, models), flag, str(target)])
    _check_refused(result, 2, *fragments)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["run", "--model-file", "{ttfs}", "--method", "ttfs", "--percentile", "99.9"],
            "--percentile does not",
        ),
        (
            ["hardware", "--model-file", "{ttfs}", "--method", "ttfs", "--percentile", "99.9"],
            "--percentile does not",
        ),
    ],
)
def test_calibration_options_refused_for_a_ttfs_aware_model(
    args: list[str], fragment: str, models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _invoke([*_fill(args, models), "--out", str(out)])
    _check_refused(result, 2, fragment, "TTFS-aware model")
    assert not (out / "results.json").exists()
    assert not (out / "hardware.json").exists()


def test_the_ttfs_aware_model_records_its_steps(models: dict[str, Path]) -> None:
    meta = json.loads((models["ttfs"] / "model.json").read_text())
    assert meta["extra"]["ttfs_aware"]["steps"] == 4


# ---- 2. numbers out of range: --steps 0 never runs T = 16 -------------------------------------
RANGES = [
    ("run steps 0", ["run", "--steps", "0"], "--steps"),
    ("run steps -3", ["run", "--method", "rate", "--steps", "-3"], "--steps"),
    ("evaluate steps 0", ["evaluate", "--steps", "0"], "--steps"),
    ("export steps 0", ["export", "--steps", "0"], "--steps"),
    ("hardware steps 0", ["hardware", "--steps", "0"], "--steps"),
    ("train hybrid steps 0", ["train", "--method", "hybrid", "--steps", "0"], "--steps"),
    ("train ttfs-aware steps -1", ["train", "--ttfs-aware", "--steps", "-1"], "--steps"),
    ("run epochs 0", ["run", "--epochs", "0"], "--epochs"),
    ("train batch-size 0", ["train", "--batch-size", "0"], "--batch-size"),
    ("run limit 0", ["run", "--limit", "0"], "--limit"),
    ("run check-samples 0", ["run", "--check-samples", "0"], "--check-samples"),
    ("run early-exit -1", ["run", "--method", "rate", "--early-exit", "-1"], "--early-exit"),
    ("run target-accuracy 1.5", ["run", "--target-accuracy", "1.5"], "--target-accuracy"),
    ("run target-accuracy 0", ["run", "--target-accuracy", "0"], "--target-accuracy"),
    ("run percentile 0", ["run", "--percentile", "0"], "--percentile"),
    ("run percentile 101", ["run", "--percentile", "101"], "--percentile"),
    ("evaluate eval-batch-size 0", ["evaluate", "--eval-batch-size", "0"], "--eval-batch-size"),
    ("train finetune-epochs 0", ["train", "--ttfs-aware", "--steps", "4", "--finetune-epochs",
     "0"], "--finetune-epochs"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "flag"), RANGES, ids=[c[0] for c in RANGES])
def test_numbers_out_of_range_are_usage_errors(
    name: str, args: list[str], flag: str, models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    option = "--out"
    target = out / "net.nir" if args[0] == "export" else out
    result = _invoke([*_trained(args, models), option, str(target)])
    _check_refused(result, 2, f"Invalid value for '{flag}'", "is not in the range")
    assert not out.exists()


NOT_FINITE = [
    ("run lr nan", ["run", "--lr", "nan"], "'--lr': 'nan' is not a finite number > 0"),
    ("train lr -1", ["train", "--lr", "-1"], "'--lr': '-1' is not a finite number > 0"),
    ("train finetune-lr 0", ["train", "--ttfs-aware", "--steps", "4", "--finetune-lr", "0"],
     "'--finetune-lr': '0' is not a finite number > 0"),
    ("hardware clock-mhz inf", ["hardware", "--clock-mhz", "inf"], "'--clock-mhz': 'inf'"),
    ("run percentile nan", ["run", "--percentile", "nan"], "'--percentile': nan is not a finite"),
    ("run target-accuracy nan", ["run", "--target-accuracy", "nan"],
     "'--target-accuracy': nan is not a finite number"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "message"), NOT_FINITE, ids=[c[0] for c in NOT_FINITE])
def test_non_finite_numbers_are_usage_errors(
    name: str, args: list[str], message: str, models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    _check_refused(_invoke([*_trained(args, models), "--out", str(out)]), 2, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hardware", "--pes", "0"], "pes must be an integer >= 1"),
        (["hardware", "--cores", "-2"], "cores must be an integer >= 1"),
        (["run", "--method", "rate", "--threshold-scale", "inf"], "threshold_scale must be"),
        (["run", "--method", "hybrid", "--leak", "2"], "leak must be a number in (0, 1]"),
        (["run", "--method", "rate", "--dither", "-1"], "dither must be a number >= 0"),
        (["run", "--steps", "100000000"], "above max_steps"),
    ],
    ids=["pes 0", "cores -2", "threshold-scale inf", "leak 2", "dither -1", "steps 1e8"],
)
def test_config_checks_run_before_any_work(
    args: list[str],
    message: str,
    models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onespike import cli

    monkeypatch.setattr(cli, "_load_splits", lambda *a, **k: pytest.fail("data loaded"))
    out = tmp_path / "out"
    result = _invoke([*_trained(args, models), "--out", str(out)])
    _check_refused(result, 1, "ConfigError", message)
    assert not out.exists()


def test_steps_one_reaches_the_config_check(tmp_path: Path) -> None:
    # --steps 1 passes the option's range; TTFS needs two levels and says so (exit 1).
    result = _invoke(["run", "--method", "ttfs", "--steps", "1", "--out", str(tmp_path / "out")])
    _check_refused(result, 1, "ConfigError", "steps >= 2")
    assert not (tmp_path / "out").exists()


# ---- 3. the model's recorded dataset and input shape against --dataset, before any loading ----
@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["evaluate"],
        ["hardware"],
        ["export", "--method", "ttfs"],
        ["train", "--ttfs-aware", "--steps", "4"],
    ],
    ids=lambda c: c[0],
)
def test_a_model_of_another_dataset_is_refused_before_loading(
    command: list[str], models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onespike import cli

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset was loaded")

    monkeypatch.setattr(cli, "_load_splits", never)
    out = tmp_path / "out"
    option = "--out"
    target = out / "net.nir" if command[0] == "export" else out
    args = [*command, "--dataset", "mnist", "--model-file", str(models["model"])]
    result = _invoke([*args, option, str(target)])
    _check_refused(result, 1, "ShapeError", "trained on 'digits'", "pass --dataset digits")
    assert not out.exists()


# ---- 4. output paths, checked before any work ------------------------------------------------
def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("keep me\n")
    return path


OUTPUTS = [
    ("run --out is a file", ["run", "--out", "{file}"], "is a file, but a directory is expected"),
    ("train --out is a file", ["train", "--out", "{file}"], "is a file, but a directory"),
    ("evaluate --out is a file", ["evaluate", "--out", "{file}"], "is a file, but a directory"),
    ("hardware --out is a file", ["hardware", "--out", "{file}"], "is a file, but a directory"),
    ("run --out under a file", ["run", "--out", "{file}/sub"], "cannot be created inside it"),
    ("export --output under a file", ["export", "--out", "{file}/net.nir"],
     "the directory of --out"),
    ("export --output is a directory", ["export", "--out", "{dir}"],
     "is a directory, but a file is expected"),
    ("run results.json is a directory", ["run", "--out", "{dir}"],
     "results.json is a directory"),
    ("run runs/ is a file", ["run", "--out", "{dir}"], "runs is a file"),
    ("train model is a file", ["train", "--out", "{dir}"], "model is a file"),
    ("train model-ttfs is a file", ["train", "--ttfs-aware", "--steps", "4", "--out", "{dir}"],
     "model-ttfs is a file"),
    ("hardware hardware.png is a directory", ["hardware", "--out", "{dir}"],
     "hardware.png is a directory"),
]  # fmt: skip
# What stands in the way in {dir}, per case ("/" marks a directory).
_IN_THE_WAY = {
    "run results.json is a directory": "results.json/",
    "run runs/ is a file": "runs",
    "train model is a file": "model",
    "train model-ttfs is a file": "model-ttfs",
    "hardware hardware.png is a directory": "hardware.png/",
}


@pytest.mark.parametrize(("name", "args", "message"), OUTPUTS, ids=[c[0] for c in OUTPUTS])
def test_output_paths_are_checked_before_any_work(
    name: str,
    args: list[str],
    message: str,
    models: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from onespike import cli

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset was loaded")

    monkeypatch.setattr(cli, "_load_splits", never)
    taken = _a_file(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    entry = _IN_THE_WAY.get(name)
    if entry is not None and entry.endswith("/"):
        (folder / entry.rstrip("/")).mkdir()
    elif entry is not None:
        (folder / entry).write_text("not a directory\n")
    before = sorted(p.name for p in folder.rglob("*"))
    filled = [a.format(file=taken, dir=folder) for a in args]
    _check_refused(_invoke(_trained(filled, models)), 2, message)
    assert taken.read_text() == "keep me\n"
    assert sorted(p.name for p in folder.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "taken"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_unwritable_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from onespike import cli

    monkeypatch.setattr(cli, "_load_splits", lambda *a, **k: pytest.fail("data loaded"))
    result = _invoke(["run", "--out", "/proc/onespike-test/run"])
    _check_refused(result, 2, "/proc/onespike-test/run", "name a place you can write to")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = _invoke(["run", "--out", str(locked / "run")])
        _check_refused(result, 2, "is not writable")
        assert not (locked / "run").exists()
    finally:
        locked.chmod(0o700)


def test_report_output_paths(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report").write_text("a file where the figures go\n")
    _check_refused(_invoke(["report", str(run_dir)]), 2, "report is a file")
    (run_dir / "report").unlink()
    target = tmp_path / "page"
    target.mkdir()
    result = _invoke(["report", str(run_dir), "--out", str(target)])
    _check_refused(result, 2, "is a directory, but a file is expected")
    assert list(run_dir.iterdir()) == []


# ---- 5. report text is drawn literally ---------------------------------------------------------
def test_a_dollar_in_a_record_does_not_break_the_report(
    models: dict[str, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    run_dir = tmp_path / "run"
    args = ["run", "--model-file", str(models["model"]), "--steps", "4", "--limit", "40"]
    result = _invoke([*args, "--check-samples", "2", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    (path,) = (run_dir / "runs").glob("*.json")
    record = json.loads(path.read_text())
    record["method"] = record["summary"]["method"] = "ttfs $\\frac{$ x"  # invalid TeX
    record["label"] = "ttfs $\\frac{$ x T=4"  # the report labels runs by the record's label
    path.write_text(json.dumps(record))
    result = _invoke(["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report" / "report.html").read_text()
    assert "ttfs $\\frac{$ x" in page
    assert (run_dir / "report" / "cost.png").stat().st_size > 1000


# ---- 6. honest validation: train holds out a recorded split; T is chosen on exactly it --------
def test_train_holds_out_and_records_a_validation_split(models: dict[str, Path]) -> None:
    from onespike.data import load_dataset

    total = len(load_dataset("digits", "train"))
    meta = json.loads((models["model"] / "model.json").read_text())
    split = meta["extra"]["validation"]
    assert split["dataset"] == "digits"
    assert split["split"] == "train"
    assert split["of"] == total
    assert split["fraction"] == 0.1
    assert split["seed"] == 0
    assert split["size"] == round(0.1 * total)
    record = json.loads((models["run"] / "checkpoints" / "checkpoint.json").read_text())
    assert record["num_samples"] == total - split["size"]  # trained on the rest only
    assert all(epoch["val_accuracy"] is not None for epoch in record["history"])


def _capture_choice(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    from onespike import cli

    seen: list[object] = []
    choose = cli.smallest_steps

    def spy(graph: object, validation: object, *args: object, **kwargs: object) -> object:
        seen.append(validation)
        return choose(graph, validation, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "smallest_steps", spy)
    return seen


def test_target_accuracy_chooses_t_on_the_recorded_held_out_images(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from onespike.data import load_dataset, split_validation

    seen = _capture_choice(monkeypatch)
    out = tmp_path / "out"
    args = ["run", "--model-file", str(models["model"]), "--method", "ttfs"]
    args += ["--target-accuracy", "0.3"]
    result = _invoke([*args, "--check-samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rest, held_out = split_validation(load_dataset("digits", "train"), 0.1, seed=0)
    (validation,) = seen
    assert torch.equal(validation.images, held_out.images)  # type: ignore[attr-defined]
    assert torch.equal(validation.labels, held_out.labels)  # type: ignore[attr-defined]
    record = json.loads((out / "results.json").read_text())
    assert record["validation"]["from"] == "recorded"
    # digits: 1,797 images, 360 for testing, 1,437 for training; 10 % of those held out.
    assert record["validation"]["size"] == len(held_out) == 144
    assert len(rest) == 1293


USER_NET = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(64, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.flat(x))))
"""


@pytest.fixture
def foreign_model(tmp_path: Path) -> list[str]:
    """A model from elsewhere (file.py:NAME plus a .pt state dict): it records no split."""
    import torch

    from onespike.data import load_dataset
    from onespike.sources import load_module
    from onespike.train import TrainConfig, train

    code = tmp_path / "net.py"
    code.write_text(USER_NET)
    model, _ = load_module(f"{code}:Net")
    torch.manual_seed(0)
    train(model, load_dataset("digits", "train"), TrainConfig(5, 64, 3e-3), progress=False)
    weights = tmp_path / "net.pt"
    torch.save(model.state_dict(), weights)
    return ["--model-file", f"{code}:Net", "--weights", str(weights)]


def test_target_accuracy_refuses_a_model_without_a_split(
    foreign_model: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onespike import cli

    monkeypatch.setattr(cli, "_load_splits", lambda *a, **k: pytest.fail("data loaded"))
    out = tmp_path / "out"
    args = ["run", *foreign_model, "--method", "ttfs", "--target-accuracy", "0.5"]
    result = _invoke([*args, "--out", str(out)])
    _check_refused(result, 2, "records no held-out validation split", "--validation-from test")
    assert not out.exists()


def test_validation_from_test_chooses_on_one_half_and_scores_the_other(
    foreign_model: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from onespike.data import load_dataset, split_validation

    seen = _capture_choice(monkeypatch)
    out = tmp_path / "out"
    args = ["run", *foreign_model, "--method", "ttfs", "--target-accuracy", "0.5"]
    args += ["--validation-from", "test"]
    result = _invoke([*args, "--seed", "3", "--check-samples", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored, chosen_on = split_validation(load_dataset("digits", "test"), 0.5, seed=3)
    (validation,) = seen
    assert torch.equal(validation.images, chosen_on.images)  # type: ignore[attr-defined]
    record = json.loads((out / "results.json").read_text())
    assert record["validation"] == {
        "from": "test",
        "fraction": 0.5,
        "seed": 3,
        "size": len(chosen_on),
        "scored_on": len(scored),
    }
    assert len(chosen_on) + len(scored) == 360
    # The SNN and the ANN are scored on the other half only.
    assert record["snn_accuracy"] * len(scored) == pytest.approx(
        round(record["snn_accuracy"] * len(scored)), abs=1e-9
    )
    assert "scoring on the other 180" in result.output


def test_validation_from_without_target_accuracy_is_refused(tmp_path: Path) -> None:
    args = ["run", "--method", "ttfs", "--validation-from", "test"]
    result = _invoke([*args, "--out", str(tmp_path / "out")])
    _check_refused(result, 2, "--validation-from does not apply without --target-accuracy")
    assert not (tmp_path / "out").exists()


# ---- 7, 8. a resumed run says so; the determinism conditions are recorded ---------------------
def test_a_resumed_training_run_says_from_where(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "out"
    first = _invoke(["train", "--epochs", "1", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "resumed training from" not in first.output
    record = json.loads((out / "checkpoints" / "checkpoint.json").read_text())
    expected = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    assert record["environment"] == expected
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["extra"]["training"] == {**expected, "seed": 0}
    again = _invoke(["train", "--epochs", "2", "--out", str(out)])
    assert again.exit_code == 0, again.output
    checkpoint = out / "checkpoints" / "checkpoint.safetensors"
    assert f"resumed training from epoch 1 of 2 (1 left), checkpoint {checkpoint}" in again.output


def test_resuming_under_another_thread_count_warns(tmp_path: Path) -> None:
    import torch

    from onespike.data import load_dataset
    from onespike.models import build_model
    from onespike.train import TrainConfig, train

    data = load_dataset("digits", "train").head(200)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model, _ = build_model("mlp", (1, 8, 8), 10)
    train(model, data, TrainConfig(1, 50, 1e-3), checkpoint_dir=tmp_path, progress=False)
    try:
        torch.set_num_threads(threads + 1)
        with pytest.warns(RuntimeWarning, match=f"threads {threads} there, {threads + 1} now"):
            result = train(
                model, data, TrainConfig(2, 50, 1e-3), checkpoint_dir=tmp_path, progress=False
            )
    finally:
        torch.set_num_threads(threads)
    assert result.resumed_from_epoch == 1
    assert result.resumed_from == tmp_path / "checkpoint.safetensors"


def test_a_fine_tuned_hybrid_keeps_the_split_and_refuses_its_conversion_options(
    models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "hybrid"
    args = ["train", "--model-file", str(models["model"]), "--method", "hybrid", "--steps", "3"]
    args += ["--finetune-epochs", "1", "--finetune-samples", "100", "--out", str(out)]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    tuned = json.loads((out / "model-hybrid" / "model.json").read_text())
    trained = json.loads((models["model"] / "model.json").read_text())
    assert tuned["extra"]["validation"] == trained["extra"]["validation"]
    assert tuned["extra"]["hybrid"]["samples"] == 100
    run = ["run", "--model-file", str(out / "model-hybrid"), "--method", "hybrid"]
    result = _invoke([*run, "--leak", "0.9", "--out", str(tmp_path / "run")])
    _check_refused(result, 2, "--leak does not apply to a fine-tuned hybrid network")
    assert not (tmp_path / "run" / "results.json").exists()
