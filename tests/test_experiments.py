"""digitlab compare and digitlab sweep: grids, statistics, resuming, and
trials run in this process, in local worker processes and on a real Ray cluster."""

import csv
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import write_idx_dataset
from digitlab import experiments, runs
from digitlab.cli import main
from digitlab.config import TrainConfig
from digitlab.data import load_dataset
from digitlab.errors import ConfigError
from digitlab.experiments.records import trial_record
from digitlab.runs import load_run

#: A trial on the synthetic 8x8 dataset: 40 images train, 20 validate.
TINY = TrainConfig(epochs=2, optimizer="adam", validation_size=20, batch_size=16)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_idx_dataset(tmp_path_factory.mktemp("tiny") / "data", classes=3)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_dataset(tiny_dir)


class _exit_status:
    """Run ``main`` where argparse may ``sys.exit(2)`` instead of returning 2."""

    code = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is SystemExit:
            self.code = error.code
            return True
        return False


def digitlab(*args, timeout=180):
    """Run the CLI in a fresh interpreter; return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "digitlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- grid


def test_grid_crosses_neurons_and_layers_with_seeds_varying_fastest():
    grid = experiments.build_grid(hidden=[32, 64], layers=[1, 2], seeds=2)
    assert grid == [
        {"hidden": (32,), "seed": 0},
        {"hidden": (32,), "seed": 1},
        {"hidden": (64,), "seed": 0},
        {"hidden": (64,), "seed": 1},
        {"hidden": (32, 32), "seed": 0},
        {"hidden": (32, 32), "seed": 1},
        {"hidden": (64, 64), "seed": 0},
        {"hidden": (64, 64), "seed": 1},
    ]


def test_grid_layers_alone_use_the_base_width_and_set_adds_axes():
    base = TrainConfig(hidden=(100,))
    grid = experiments.build_grid(
        base,
        layers=[1, 3],
        assignments=[("optimizer", ["sgd", "adam"]), ("learning_rate", [0.1])],
    )
    assert grid == [
        {"hidden": (100,), "optimizer": "sgd", "learning_rate": 0.1},
        {"hidden": (100,), "optimizer": "adam", "learning_rate": 0.1},
        {"hidden": (100, 100, 100), "optimizer": "sgd", "learning_rate": 0.1},
        {"hidden": (100, 100, 100), "optimizer": "adam", "learning_rate": 0.1},
    ]
    configs = experiments.grid_configs(base, grid)
    assert configs[3] == TrainConfig(hidden=(100, 100, 100), optimizer="adam", learning_rate=0.1)
    assert experiments.build_grid() == [{}]


def test_set_values_are_converted_to_the_field_type():
    assert experiments.parse_assignment("learning_rate=0.01,0.1") == (
        "learning_rate",
        [0.01, 0.1],
    )
    assert experiments.parse_assignment("learning_rate=default,0.5") == (
        "learning_rate",
        [None, 0.5],
    )
    assert experiments.parse_assignment("hidden=256+128,512") == ("hidden", [(256, 128), (512,)])
    assert experiments.parse_assignment("batch-size=32,64,32") == ("batch_size", [32, 64])
    assert experiments.parse_assignment("optimizer=sgd,adam") == ("optimizer", ["sgd", "adam"])
    assert experiments.parse_assignment("augment=true,no") == ("augment", [True, False])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("neurons=64", r"^assignments: expected a field of model, hidden, .*Received: 'neurons'"),
        ("epochs=ten", r"^assignments: epochs: expected an integer. Received: 'ten'"),
        ("dropout_rate=0.1,lots", r"^assignments: dropout_rate: expected a number"),
        ("hidden=64+x", r"^assignments: hidden: expected integers joined by \+"),
        ("epochs=", r"^assignments: epochs: expected comma-separated values"),
        ("epochs=1,,2", r"^assignments: epochs: expected comma-separated values"),
        ("epochs", r"^assignments: expected FIELD=VALUE"),
        ("augment=maybe", r"^assignments: augment: expected true or false. Received: 'maybe'"),
    ],
)
def test_bad_assignment_is_a_config_error_naming_the_field(text, message):
    with pytest.raises(ConfigError, match=message):
        experiments.parse_assignment(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": [8], "assignments": [("hidden", [(8,)])]}, "^assignments: expected either "),
        ({"seeds": 2, "assignments": [("seed", [1])]}, "^assignments: expected either seeds "),
        ({"assignments": [("epochs", [1]), ("epochs", [2])]}, "^assignments: .* each field once"),
        ({"hidden": [8, 0]}, r"^hidden: expected positive integers. Received: 0"),
        ({"layers": [True]}, r"^layers: expected positive integers. Received: True"),
        ({"seeds": 0}, r"^seeds: expected a positive integer. Received: 0"),
    ],
)
def test_bad_grid_axes_are_config_errors_naming_the_argument(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        experiments.build_grid(**kwargs)


def test_invalid_grid_values_fail_before_any_training():
    grid = experiments.build_grid(assignments=[("optimizer", ["sgd", "lion"])])
    with pytest.raises(ConfigError, match="optimizer: expected one of"):
        experiments.grid_configs(TrainConfig(), grid)
    grid = experiments.build_grid(assignments=[("model", ["mlp", "xgboost"])])
    with pytest.raises(
        ConfigError, match=r"model: expected one of .*rf.*Received: model='xgboost'"
    ):
        experiments.grid_configs(TrainConfig(), grid)


def test_trial_keys_are_stable_and_tell_configs_and_data_apart():
    key = experiments.trial_key(TrainConfig(), "abc")
    assert re.fullmatch("[0-9a-f]{16}", key)
    # The same in a fresh interpreter (no per-process hash seed), or resuming breaks.
    code = "from digitlab import experiments as e, config as c; "
    code += "print(e.trial_key(c.TrainConfig(), 'abc'))"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert fresh.stdout.strip() == key
    assert key != experiments.trial_key(TrainConfig(seed=1), "abc")
    assert key != experiments.trial_key(TrainConfig(), "abd")


def test_data_fingerprint_tells_a_slice_from_the_whole(tiny):
    part = tiny.head(50)
    assert experiments.data_fingerprint(tiny) == experiments.data_fingerprint(tiny)
    assert experiments.data_fingerprint(part) != experiments.data_fingerprint(tiny)


# --------------------------------------------------------------------------- resuming old folders

#: What digitlab 0.1's experiments.py computed: a sweep folder it wrote must still resume.
DEFAULT_CONFIG_KEY = "a2a11ecd404df072"  # trial_key(TrainConfig(), "abc")
TINY_FINGERPRINT = "de4b724fcdf7186107f88ac0f67e7a63e6cb9c2b1623f1173b3edfcb3a5124ea"
#: trials/<key>.json of TrainConfig(model="gnb", validation_size=20, seed=0) on the tiny data,
#: as digitlab 0.1 wrote it (before compile_seconds).
OLD_TRIAL = {
    "key": "08b61b74c7f0f600",
    "data_fingerprint": TINY_FINGERPRINT,
    "config": {
        **TrainConfig(model="gnb", validation_size=20, seed=0).to_dict(),
    },
    "accuracy": 1.0,
    "loss": -0.0,
    "ece": 0.0,
    "macro_f1": 1.0,
    "eval_set": "validation",
    "eval_size": 20,
    "params": 387,
    "size_unit": "parameters",
    "model_bytes": 3119,
    "train_seconds": 0.010855286999969849,
    "predict_seconds_per_10k": 0.805079999992131,
    "seconds_per_epoch": None,
    "history": {},
    "run_dir": None,
    "host": "vm",
    "pid": 5804,
    "finished": "2026-12-01T10:23:00+00:00",
}


def test_trial_keys_and_fingerprints_are_those_existing_folders_use(tiny):
    assert experiments.trial_key(TrainConfig(), "abc") == DEFAULT_CONFIG_KEY
    assert experiments.data_fingerprint(tiny) == TINY_FINGERPRINT
    config = TrainConfig(model="gnb", validation_size=20, seed=0)
    assert experiments.trial_key(config, TINY_FINGERPRINT) == OLD_TRIAL["key"]


def test_a_sweep_folder_written_before_compile_seconds_resumes(tiny, tmp_path):
    out = tmp_path / "old-sweep"
    (out / "trials").mkdir(parents=True)
    old = out / "trials" / f"{OLD_TRIAL['key']}.json"
    old.write_text(json.dumps(OLD_TRIAL, indent=2) + "\n")
    stamp = old.stat().st_mtime_ns
    configs = [TrainConfig(model="gnb", validation_size=20, seed=seed) for seed in (0, 1)]
    log = io.StringIO()
    result = experiments.run_sweep(configs, out=out, dataset=tiny, log=log)
    assert result.skipped == 1 and not result.failed
    assert "skipping 1 already finished; running 1 in this process" in log.getvalue()
    assert old.stat().st_mtime_ns == stamp and result.trials[0] == OLD_TRIAL
    assert "compile_seconds" in result.trials[1]
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["key"] == OLD_TRIAL["key"] and rows[0]["compile_seconds"] == ""
    assert float(rows[0]["train_seconds"]) == OLD_TRIAL["train_seconds"]
    assert result.summary[0]["seeds"] == 2


# --------------------------------------------------------------------------- statistics


def _record(hidden, seed, accuracy, seconds, params=1000):
    config = TrainConfig(hidden=hidden, seed=seed).to_dict()
    return {
        "config": config,
        "accuracy": accuracy,
        "loss": 1 - accuracy,
        "ece": 0.01,
        "train_seconds": seconds,
        "predict_seconds_per_10k": 0.5,
        "params": params,
    }


def test_summary_is_mean_and_sample_std_over_seeds():
    trials = [
        _record((64,), 0, 0.90, 10.0),
        _record((64,), 1, 0.92, 12.0),
        _record((64,), 2, 0.94, 17.0),
        _record((64, 64), 0, 0.95, 20.0, params=2000),
    ]
    rows = experiments.summarize(trials, ["hidden", "seed"])
    assert len(rows) == 2
    one, two = rows
    assert one["hidden"] == [64] and one["layers"] == 1 and one["neurons"] == 64
    assert one["seeds"] == 3
    # By hand: mean 0.92; deviations -0.02, 0, 0.02; sample variance 0.0008 / 2.
    assert one["accuracy_mean"] == pytest.approx(0.92)
    assert one["accuracy_std"] == pytest.approx(0.02)
    # Seconds 10, 12, 17: mean 13; squared deviations 9, 1, 16; variance 26 / 2 = 13.
    assert one["train_seconds_mean"] == pytest.approx(13.0)
    assert one["train_seconds_std"] == pytest.approx(13**0.5)
    assert two["layers"] == 2 and two["seeds"] == 1
    assert two["accuracy_std"] == 0.0 and two["params"] == 2000
    table = experiments.format_sweep_table(rows, ["hidden", "seed"])
    assert "| (64) | 3 | 1,000 | 0.9200 ± 0.0200 |" in table


# --------------------------------------------------------------------------- timings and plots

FIXTURES = Path(__file__).resolve().parent / "fixtures"
METRICS = {"accuracy": 0.9, "loss": 0.3, "ece": 0.02, "macro_f1": 0.89, "set": "test", "size": 50}


def _run(**timings):
    """A run as digitlab.training returns it, with these ``run.json`` timings."""
    info = {"params": 1000, "model_bytes": 20_000, "predict_seconds_per_10k": 0.4}
    info.update(seconds_per_epoch=0.5, data={"class_names": ["0", "1"], "image_shape": [8, 8]})
    history = {"loss": [0.5, 0.3], "accuracy": [0.8, 0.9], "epoch_seconds": [3.0, 0.5]}
    return SimpleNamespace(
        config=TrainConfig(hidden=(32,)),
        path=Path("/r/c/mlp"),
        info=runs.RunInfo.from_dict({**info, **timings}),
        metrics=runs.Metrics.from_dict(METRICS),
        history=runs.History.from_dict(history),
    )


def test_training_seconds_exclude_compilation():
    run = _run(train_seconds=10.4, compile_seconds=8.3)
    row = experiments.comparison_row(run, out=Path("/r/c"))
    assert row["train_seconds"] == pytest.approx(2.1) and row["compile_seconds"] == 8.3
    assert row["run_dir"] == "mlp" and row["eval_set"] == "test" and row["macro_f1"] == 0.89
    assert list(row)[4:7] == ["train_seconds", "compile_seconds", "predict_seconds_per_10k"]
    record = trial_record(run)
    assert record["train_seconds"] == pytest.approx(2.1) and record["compile_seconds"] == 8.3
    assert record["history"] == {"loss": [0.5, 0.3], "accuracy": [0.8, 0.9]}  # no epoch_seconds
    assert record["seconds_per_epoch"] == 0.5 and record["config"]["hidden"] == [32]
    assert "compile_seconds" not in experiments.comparable(record)
    table = experiments.format_compare_table([row])
    assert "| mlp | 1,000 | 20 kB | 2.1 | 8.3 | 0.40 | 0.9000 |" in table


def test_a_run_without_compile_seconds_reports_its_whole_fit():
    run = load_run(FIXTURES / "mlp-0.1.0")  # digitlab 0.1.0 did not measure compilation
    row = experiments.comparison_row(run)
    assert row["compile_seconds"] is None
    assert row["train_seconds"] == json.loads((run.path / "run.json").read_text())["train_seconds"]
    assert f"| {row['train_seconds']:.1f} | – |" in experiments.format_compare_table([row])
    noisy = experiments.comparison_row(_run(train_seconds=1.0, compile_seconds=1.2))
    assert noisy["train_seconds"] == 0.0  # two clocks a little apart never give negative time


def test_summary_and_table_keep_compile_seconds_apart():
    trials = [
        {**_record((64,), 0, 0.90, 2.0), "compile_seconds": 8.0},
        {**_record((64,), 1, 0.92, 4.0), "compile_seconds": 0.5},
        _record((64,), 2, 0.94, 3.0),  # recorded before compile seconds were measured
        _record((128,), 0, 0.95, 5.0),
    ]
    one, two = experiments.summarize(trials, ["hidden", "seed"])
    assert one["train_seconds_mean"] == pytest.approx(3.0)
    assert one["compile_seconds_mean"] == pytest.approx(4.25)
    assert two["compile_seconds_mean"] is None and two["compile_seconds_std"] is None
    table = experiments.format_sweep_table([one, two], ["hidden", "seed"])
    assert table.splitlines()[0].endswith("| train s | compile s |")
    assert table.splitlines()[2].endswith("| 3.0 ± 1.0 | 4.2 ± 5.3 |")
    assert table.splitlines()[3].endswith("| 5.0 | – |")


def _lines(ax):
    """Each error-bar series of ``ax``: (label, x values, line style)."""
    return [
        (c.get_label(), list(c.lines[0].get_xdata()), c.lines[0].get_linestyle())
        for c in ax.containers
    ]


def test_one_width_is_drawn_as_points_and_labels_count_layers_and_seeds():
    import matplotlib.pyplot as plt

    trials = [_record((128,) * depth, 0, 0.9 + depth / 100, float(depth)) for depth in (1, 2)]
    summary = experiments.summarize(trials, ["hidden"])
    figures = experiments.plot_sweep(summary, ["hidden"])
    try:
        (ax,) = figures["accuracy_vs_neurons.png"].axes
        series = _lines(ax)
        assert [label for label, _, _ in series] == ["1 layer", "2 layers"]
        assert all(style == "None" for _, _, style in series)  # points, not a trend
        (x1,), (x2,) = (x for _, x, _ in series)
        assert x1 < 128 < x2  # side by side around the one width
        assert [t.get_text() for t in ax.get_xticklabels()] == ["128"]
        assert ax.get_ylabel() == "accuracy (1 seed)"
        ax_layers, ax_neurons = figures["training_time.png"].axes
        assert [(label, style) for label, _, style in _lines(ax_layers)] == [("128 neurons", "-")]
        assert ax_layers.get_ylabel() == "training seconds\n(without compilation; 1 seed)"
        assert all(style == "None" for _, _, style in _lines(ax_neurons))
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_several_widths_are_lines_with_spread_over_seeds():
    import matplotlib.pyplot as plt

    trials = [_record((width,), seed, 0.9, 1.0) for width in (32, 64) for seed in (0, 1, 2)]
    summary = experiments.summarize(trials, ["hidden", "seed"])
    figures = experiments.plot_sweep(summary, ["hidden", "seed"])
    try:
        (ax,) = figures["accuracy_vs_neurons.png"].axes
        assert _lines(ax) == [("1 layer", [32, 64], "-")]
        assert ax.get_ylabel() == "accuracy (mean ± std over 3 seeds)"
        assert ax.get_xscale() == "log"
    finally:
        for fig in figures.values():
            plt.close(fig)


# --------------------------------------------------------------------------- sweep runs


def test_sweep_writes_trials_results_summary_and_chart(tiny, tmp_path):
    base = TrainConfig(model="gnb")
    grid = experiments.build_grid(seeds=3, assignments=[("validation_size", [20, 30])])
    log = io.StringIO()
    result = experiments.run_sweep(
        experiments.grid_configs(base, grid), out=tmp_path / "sweep", dataset=tiny, log=log
    )
    assert len(result.trials) == 6 and not result.failed and result.skipped == 0
    assert result.varied == ["validation_size", "seed"]
    assert "[6/6] validation_size=30 seed=2: acc " in log.getvalue()
    files = {p.name for p in (tmp_path / "sweep").iterdir()}
    assert files == {"trials", "results.csv", "summary.csv", "results.json", "summary.png"}
    assert len(list((tmp_path / "sweep" / "trials").glob("*.json"))) == 6
    with open(tmp_path / "sweep" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["validation_size"], r["seed"]) for r in rows[:3]] == [
        ("20", "0"),
        ("20", "1"),
        ("20", "2"),
    ]
    assert {r["eval_size"] for r in rows} == {"20", "30"}
    with open(tmp_path / "sweep" / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert [(r["validation_size"], r["seeds"]) for r in summary] == [("20", "3"), ("30", "3")]
    accuracies = [t["accuracy"] for t in result.trials[:3]]
    assert float(summary[0]["accuracy_mean"]) == pytest.approx(sum(accuracies) / 3)
    saved = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert len(saved["trials"]) == 6 and len(saved["summary"]) == 2


@pytest.mark.slow
def test_sweep_over_neurons_and_layers_plots_both(tiny, tmp_path):
    grid = experiments.build_grid(hidden=[4, 8], layers=[1, 2], seeds=2)
    configs = experiments.grid_configs(TINY, grid)
    log = io.StringIO()
    result = experiments.run_sweep(configs, out=tmp_path / "sweep", dataset=tiny, log=log)
    assert len(result.trials) == 8 and result.varied == ["hidden", "seed"]
    assert "[8/8] hidden=(8,8) seed=1: acc " in log.getvalue()
    files = {p.name for p in (tmp_path / "sweep").iterdir()}
    assert {"accuracy_vs_neurons.png", "training_time.png", "summary.png"} <= files
    assert [(r["neurons"], r["layers"], r["seeds"]) for r in result.summary] == [
        (4, 1, 2),
        (8, 1, 2),
        (4, 2, 2),
        (8, 2, 2),
    ]
    # Parameters of Dense(4) on 8x8 inputs, 3 classes: 64*4+4 + 4*3+3.
    assert result.summary[0]["params"] == 64 * 4 + 4 + 4 * 3 + 3


def test_sweep_resumes_and_runs_only_missing_trials(tiny, tmp_path):
    out = tmp_path / "sweep"
    base = TrainConfig(model="gnb", validation_size=20)
    first = experiments.run_sweep(
        experiments.grid_configs(base, experiments.build_grid(seeds=2)),
        out=out,
        dataset=tiny,
        log=io.StringIO(),
    )
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "trials").iterdir()}
    log = io.StringIO()
    second = experiments.run_sweep(
        experiments.grid_configs(base, experiments.build_grid(seeds=3)),
        out=out,
        dataset=tiny,
        log=log,
    )
    assert second.skipped == 2 and len(second.trials) == 3
    assert "skipping 2 already finished; running 1 in this process" in log.getvalue()
    assert "[3/3] seed=2: acc" in log.getvalue() and "seed=0: acc" not in log.getvalue()
    for name, stamp in stamps.items():
        assert (out / "trials" / name).stat().st_mtime_ns == stamp  # not rerun
    assert second.trials[:2] == first.trials


def test_repeated_configs_are_one_trial(tiny, tmp_path):
    config = TrainConfig(model="bnb", validation_size=20)
    result = experiments.run_sweep([config, config], out=tmp_path, dataset=tiny, log=io.StringIO())
    assert len(result.trials) == 1


@pytest.mark.slow
def test_cli_sweep_reports_a_failed_trial_and_retries_it(tiny_dir, tmp_path):
    # validation_size=500 cannot split 60 images: that trial fails, the other runs.
    args = ["sweep", "--model", "gnb", "--data-dir", tiny_dir, "--out", tmp_path / "s"]
    args += ["--set", "validation_size=20,500"]
    done = digitlab(*args)
    assert done.returncode == 2
    assert "validation_size=500: FAILED: validation_size: expected 1..59" in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"digitlab: error: 1 of 2 trials failed (see above); rerun the same command with "
        f"--out {tmp_path / 's'} to retry them"
    ]
    assert len(list((tmp_path / "s" / "trials").glob("*.json"))) == 1
    again = digitlab(*args)
    assert again.returncode == 2
    assert "skipping 1 already finished; running 1 in this process" in again.stdout


def test_cli_sweep_json_summary(tiny_dir, tmp_path):
    done = digitlab(
        "sweep",
        "--model",
        "bnb",
        "--data-dir",
        tiny_dir,
        "--seeds",
        "2",
        "--set",
        "validation_size=20,30",
        "--out",
        tmp_path / "s",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["trials"] == 4 and result["skipped"] == 0 and result["failed"] == []
    assert result["varied"] == ["validation_size", "seed"]
    assert [row["validation_size"] for row in result["summary"]] == [20, 30]
    assert "[4/4]" in done.stderr  # progress goes to stderr under --json


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "neurons=1,2"], "digitlab: error: --set: expected a field of model"),
        (["--set", "epochs=x"], "digitlab: error: --set: epochs: expected an integer"),
        (["--set", "optimizer=lion"], "digitlab: error: optimizer: expected one of"),
        (["--model", "xgboost"], "digitlab: error: --model: expected one of"),
        (["--hidden", "0"], "digitlab sweep: error: argument --hidden: expected comma-sep"),
    ],
)
def test_cli_sweep_usage_errors_are_one_line(args, message, tiny_dir, tmp_path, capsys):
    argv = ["sweep", "--data-dir", str(tiny_dir), "--out", str(tmp_path / "s"), *args]
    with _exit_status() as status:
        status.code = main(argv)
    assert status.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_cli_sweep_killed_midway_resumes_without_redoing_trials(tiny_dir, tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "digitlab", "sweep", "--data-dir", str(tiny_dir)]
    args += ["--hidden", "4,8", "--seeds", "2", "--epochs", "3", "--out", str(out)]
    args += ["--set", "validation_size=20", "--set", "optimizer=adam"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trials = out / "trials"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if trials.is_dir() and any(trials.glob("*.json")):
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # no chance to tidy up
    finally:
        process.communicate(timeout=30)
    finished = {p.name: p.stat().st_mtime_ns for p in trials.glob("*.json")}
    assert 1 <= len(finished) <= 4
    for path in trials.glob("*.json"):
        assert json.loads(path.read_text())["accuracy"] >= 0  # whole records only
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    if len(finished) < 4:
        assert f"skipping {len(finished)} already finished" in done.stdout
    assert len(list(trials.glob("*.json"))) == 4
    for name, stamp in finished.items():
        assert (trials / name).stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_worker_processes_compute_what_this_process_computes(tiny, tmp_path):
    configs = experiments.grid_configs(
        TINY,
        experiments.build_grid(hidden=[4], seeds=2, assignments=[("model", ["mlp", "logreg"])]),
    )
    here = experiments.run_sweep(configs, out=tmp_path / "here", dataset=tiny, log=io.StringIO())
    log = io.StringIO()
    pool = experiments.run_sweep(configs, out=tmp_path / "pool", dataset=tiny, workers=2, log=log)
    assert "running 4 in 2 worker processes" in log.getvalue()
    assert len({t["pid"] for t in pool.trials} - {os.getpid()}) == 2
    assert _by_key(pool.trials) == _by_key(here.trials)


# --------------------------------------------------------------------------- compare


@pytest.mark.slow
def test_cli_compare_writes_table_csv_json_and_chart(tiny_dir, tmp_path):
    done = digitlab(
        "compare",
        "--models",
        "mlp,gnb,bnb",
        "--data-dir",
        tiny_dir,
        "--epochs",
        "1",
        "--split",
        "official",
        "--out",
        tmp_path / "cmp2",
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "cmp2"
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith(
        "| model | params / size | model file | train s | compile s | predict s/10k"
    )
    assert [line.split("|")[1].strip() for line in table[2:]] == ["mlp", "gnb", "bnb"]
    assert {p.name for p in out.iterdir()} == {
        "mlp",
        "gnb",
        "bnb",
        "compare.csv",
        "compare.json",
        "compare.png",
    }
    saved = json.loads((out / "compare.json").read_text())
    assert [row["model"] for row in saved["rows"]] == ["mlp", "gnb", "bnb"]
    assert all(row["eval_set"] == "test" and row["eval_size"] == 20 for row in saved["rows"])
    assert saved["settings"] == {"split": "official", "seed": 42, "epochs": 1}
    assert saved["configs"]["mlp"]["epochs"] == 1 and saved["configs"]["gnb"]["split"] == "official"
    with open(out / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["mlp", "gnb", "bnb"]
    assert float(rows[1]["accuracy"]) == saved["rows"][1]["accuracy"]
    for name in ("mlp", "gnb", "bnb"):
        info = json.loads((out / name / "run.json").read_text())
        assert info["params"] == saved["rows"][["mlp", "gnb", "bnb"].index(name)]["params"]
    assert (out / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_compare_in_process_returns_rows(tiny, tmp_path):
    settings = {"validation_size": 20}
    result = experiments.compare(
        ["gnb", "knn"], settings=settings, dataset=tiny, out=tmp_path / "c"
    )
    assert [row["model"] for row in result.rows] == ["gnb", "knn"]
    assert result.rows[1]["size_unit"] == "stored images" and result.rows[1]["params"] == 40
    assert "| knn | 40 stored images |" in result.table()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("mlp,nope", r"--models: expected names from mlp, .*rf, logreg.*Received: nope"),
        ("gnb,gnb", r"--models: expected each model once"),
    ],
)
def test_cli_compare_bad_model_list_is_one_line(models, message, tiny_dir, tmp_path, capsys):
    argv = [
        "compare",
        "--models",
        models,
        "--data-dir",
        str(tiny_dir),
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digitlab: error: --models")
    assert re.search(message, lines[0])
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([" ", ""], r"^models: expected at least one model name. Received none"),
        (["mlp", "nope"], r"^models: expected names from .*mlp.*Received: nope"),
        (["gnb", "gnb"], r"^models: expected each model once. Received gnb twice"),
    ],
)
def test_compare_errors_name_the_argument(models, message, tiny, tmp_path):
    with pytest.raises(ConfigError, match=message):
        experiments.compare(models, dataset=tiny, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_compare_defaults_to_every_model_but_the_slow_ones():
    from digitlab.models import names as model_names

    slow = ("cnn-deep", "svm")
    assert experiments.default_models() == [name for name in model_names() if name not in slow]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, r"^workers: expected a positive integer. Received: 0"),
        ({"ray_address": "nowhere"}, r"^ray_address: expected HOST:PORT or auto"),
    ],
)
def test_sweep_errors_name_the_argument(kwargs, message, tiny, tmp_path):
    configs = [TrainConfig(model="gnb", validation_size=20)]
    with pytest.raises(ConfigError, match=message):
        experiments.run_sweep(
            configs, out=tmp_path / "s", dataset=tiny, log=io.StringIO(), **kwargs
        )
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^out: expected a folder for the sweep"):
        experiments.run_sweep(configs, out=tmp_path / "file", dataset=tiny, log=io.StringIO())


def test_compare_refuses_a_folder_with_files(tiny, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    from digitlab.errors import RunError

    with pytest.raises(RunError, match="expected a new or empty folder"):
        experiments.compare(["gnb"], dataset=tiny, out=tmp_path / "c")


# --------------------------------------------------------------------------- Ray


WORKER_NODE = """
import os, signal, sys, time
# Keep the node on loopback: with clusters "enabled" Ray swaps 127.0.0.1 for the
# machine's public address.  `ray start --address` refuses to run in this mode,
# so the worker node is started the way `ray start` does it internally.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
from ray._private.node import Node
from ray._private.parameter import RayParams
Node(RayParams(gcs_address=sys.argv[1], node_ip_address="127.0.0.1", num_cpus=1),
     head=False, shutdown_at_exit=True, spawn_reaper=True)
signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on 127.0.0.1 only: a head (``ray start
    --head``) and one worker node, one CPU each; stopped at the end."""
    # Not imported here: this process must import ray only once run_sweep has
    # set it up for loopback.
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed (pip install 'digitlab[cluster]')")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    ray = Path(sys.executable).with_name("ray")
    # Each in its own session so the teardown can end exactly these processes.
    head = subprocess.Popen(
        [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}"]
        + ["--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", "--block"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    worker = None
    try:
        _wait_for_nodes(address, 1, env)
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER_NODE, address],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_nodes(address, 2, env)
        yield {"address": address, "sessions": [head.pid, worker.pid]}
    finally:
        for process in (worker, head):
            if process is not None:
                _stop_session(process)


def _wait_for_nodes(address: str, count: int, env: dict) -> None:
    code = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = subprocess.run(
            [sys.executable, "-c", code, address], env=env, capture_output=True, text=True
        )
        if done.returncode == 0 and done.stdout.strip() == str(count):
            return
        time.sleep(1)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {count} node(s)")


def _stop_session(process: subprocess.Popen) -> None:
    """End the process and every process of its session (by process group id)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:  # children that outlived the leader
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _session_listeners(sessions) -> list[str]:
    import psutil

    addresses = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) not in sessions:
                continue
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    addresses.append(conn.laddr.ip)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return addresses


def _by_key(trials):
    return {t["key"]: experiments.comparable(t) for t in trials}


@pytest.mark.slow
def test_ray_cluster_sweep_matches_the_local_sweep(ray_cluster, tmp_path, mnist):
    from digitlab.data.idx import write_idx

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte", mnist.x_train[:2000])
    write_idx(data_dir / "train-labels-idx1-ubyte", mnist.y_train[:2000])
    write_idx(data_dir / "t10k-images-idx3-ubyte", mnist.x_test[:500])
    write_idx(data_dir / "t10k-labels-idx1-ubyte", mnist.y_test[:500])
    args = ["sweep", "--data-dir", data_dir, "--hidden", "16,32", "--seeds", "2"]
    args += ["--epochs", "1", "--set", "validation_size=500", "--json"]

    local = digitlab(*args, "--out", tmp_path / "local", timeout=300)
    assert local.returncode == 0, local.stderr
    remote = digitlab(
        *args, "--out", tmp_path / "ray", "--ray-address", ray_cluster["address"], timeout=300
    )
    assert remote.returncode == 0, remote.stderr
    assert "on the Ray cluster at 127.0.0.1:" in remote.stderr

    def trials(folder):
        return [json.loads(p.read_text()) for p in (folder / "trials").glob("*.json")]

    local_trials, ray_trials = trials(tmp_path / "local"), trials(tmp_path / "ray")
    assert len(local_trials) == len(ray_trials) == 4
    assert _by_key(ray_trials) == _by_key(local_trials)  # same numbers, to the last bit
    assert {t["pid"] for t in ray_trials}.isdisjoint({t["pid"] for t in local_trials})
    summary_local = json.loads(local.stdout)["summary"]
    summary_ray = json.loads(remote.stdout)["summary"]
    for a, b in zip(summary_local, summary_ray, strict=True):
        assert a["accuracy_mean"] == b["accuracy_mean"] and a["loss_std"] == b["loss_std"]

    # BLAS-based baselines too (Ray workers run with one OpenMP thread).
    dataset = load_dataset(data_dir)
    configs = [
        TrainConfig(model=m, validation_size=500, seed=s) for m in ("logreg", "knn") for s in (0, 1)
    ]
    here = experiments.run_sweep(
        configs, out=tmp_path / "b-local", dataset=dataset, log=io.StringIO()
    )
    there = experiments.run_sweep(
        configs,
        out=tmp_path / "b-ray",
        dataset=dataset,
        ray_address=ray_cluster["address"],
        log=io.StringIO(),
    )
    assert _by_key(there.trials) == _by_key(here.trials)

    listening = _session_listeners(ray_cluster["sessions"])
    assert listening, "found none of the cluster's listening sockets"
    assert set(listening) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening


def test_unreachable_ray_address_fails_fast_in_one_line(tiny_dir, tmp_path, capsys):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    argv = ["sweep", "--model", "gnb", "--data-dir", str(tiny_dir), "--out", str(tmp_path / "s")]
    assert main([*argv, "--ray-address", address]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        f"digitlab: error: --ray-address: could not reach a Ray cluster at {address}. "
        "Connection refused"
    ]


def test_compare_trains_each_model_its_own_way_under_the_settings(tiny, tmp_path):
    with pytest.raises(ConfigError, match="settings: expected fields of .*Received: neurons"):
        experiments.compare(["gnb"], settings={"neurons": 3}, dataset=tiny, out=tmp_path / "x")
    result = experiments.compare(
        ["bnb"], settings={"split": "official", "seed": 7}, dataset=tiny, out=tmp_path / "c"
    )
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    expected = TrainConfig.for_model("bnb", split="official", seed=7)
    assert saved["configs"]["bnb"] == expected.to_dict()
    assert result.rows[0]["eval_set"] == "test"
