"""``digitlab tune``: search spaces, studies in SQLite and PostgreSQL, resuming,
several processes on one study, the CLI."""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from conftest import write_idx_dataset
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError
from digitlab.experiments.tune import tune
from digitlab.experiments.tune_outputs import check_tune_folder
from digitlab.experiments.tune_space import parse_search_space, space_overrides
from test_experiments import ray_cluster  # noqa: F401  (the two-node Ray cluster fixture)

SPACE = ["hidden=8..64:log:int", "learning_rate=1e-3..0.3:log", "optimizer=sgd,adam"]


def tiny_base(**fields) -> TrainConfig:
    return TrainConfig.for_model(
        "mlp", **{"epochs": 2, "validation_size": 1000, "hidden": (16,), **fields}
    )


# --------------------------------------------------------------------------- space


def test_parse_search_space_ranges_and_choices():
    hidden, lr, opt, drop, layers = parse_search_space(
        [*SPACE, "dropout_rate=0..0.4", "layers=1..3"]
    )
    assert (hidden.low, hidden.high, hidden.log, hidden.integer) == (8, 64, True, True)
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-3, 0.3, True, False)
    assert opt.texts == ("sgd", "adam") and not opt.is_range
    assert (drop.low, drop.high, drop.log) == (0.0, 0.4, False)
    assert layers.integer
    base = TrainConfig()
    assert space_overrides({"hidden": 32, "layers": 2}, base) == {"hidden": (32, 32)}
    assert space_overrides({"layers": 3}, base) == {"hidden": (128, 128, 128)}
    (hidden_choices,) = parse_search_space(["hidden=256+128,512"])
    assert hidden_choices.values == ((256, 128), (512,))
    (epochs,) = parse_search_space(["epochs=1..5"])
    assert epochs.integer


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("hidden", "expected FIELD=LOW..HIGH"),
        ("nope=1..2", "expected a field of"),
        ("split=tutorial,official", "validation set"),
        ("learning_rate=0..1:log", "LOW > 0"),
        ("learning_rate=1..0.1", "LOW < HIGH"),
        ("learning_rate=..0.1", "expected numbers"),
        ("learning_rate=a..b", "expected numbers"),
        ("learning_rate=1e-3..1:int", ":int only for an integer field"),
        ("hidden=8.5..64", "integer bounds"),
        ("optimizer=1..3", "not a number"),
        ("epochs=1,x", "epochs: expected an integer"),
        ("learning_rate=1e-3..1:cubic", "expected FIELD=LOW..HIGH"),
    ],
)
def test_parse_search_space_refuses_bad_specs_in_one_line(spec, words):
    with pytest.raises(ConfigError) as info:
        parse_search_space([spec])
    message = str(info.value)
    assert message.startswith("space: ") and words in message and "\n" not in message


def test_parse_search_space_refuses_empty_and_repeated():
    with pytest.raises(ConfigError, match="space: .*at least one"):
        parse_search_space([])
    with pytest.raises(ConfigError, match="each field once"):
        parse_search_space(["epochs=1..2", "epochs=3,4"])


def test_foreign_out_folder_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="out: expected a new or empty folder"):
        tune(tiny_base(), SPACE, trials=1, out=tmp_path, dataset=None)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_tune_folder(file)


def test_bad_arguments_are_one_line_config_errors(tmp_path, small_mnist):
    with pytest.raises(ConfigError, match="^trials: expected a positive integer"):
        tune(tiny_base(), SPACE, trials=0, out=tmp_path / "a", dataset=small_mnist)
    with pytest.raises(ConfigError, match="^base_config: expected a split with validation"):
        tune(
            tiny_base(split="official", calibrate=False),
            SPACE,
            trials=1,
            out=tmp_path / "b",
            dataset=small_mnist,
        )
    with pytest.raises(ConfigError, match="^workers: expected 1 without ray_address"):
        tune(tiny_base(), SPACE, trials=1, workers=2, out=tmp_path / "w", dataset=small_mnist)
    with pytest.raises(ConfigError, match="^storage: expected an SQLAlchemy URL") as info:
        tune(
            tiny_base(),
            SPACE,
            trials=1,
            storage="nosuchdb://user:secret@host/x",
            out=tmp_path / "c",
            dataset=small_mnist,
        )
    assert "secret" not in str(info.value)


# --------------------------------------------------------------------------- studies


def test_tune_finds_best_resumes_and_refuses_another_space(tmp_path, small_mnist):
    out = tmp_path / "study"
    first = tune(tiny_base(), SPACE, trials=5, out=out, dataset=small_mnist, seed=0, log=_Log())
    assert first.ran == 5 and len(first.rows) == 5
    complete = [r for r in first.rows if r["state"] == "COMPLETE"]
    assert complete and first.best_value == max(r["value"] for r in complete)
    assert 0.0 < first.test_accuracy <= 1.0
    assert first.best_config.hidden[0] in range(8, 65)
    assert first.best_config.optimizer in ("sgd", "adam")
    assert first.best_run == out / f"best-trial-{first.best_trial}"
    for name in ("study.db", "tune.json", "results.csv", "results.json", "tune_history.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["best_value"] == first.best_value
    assert saved["test_accuracy"] == first.test_accuracy
    assert len(saved["trials"]) == 5
    assert "| trial | state | hidden | learning_rate | optimizer |" in first.table()

    # The same call again: nothing left to run, the best run is reused.
    again = tune(tiny_base(), SPACE, trials=5, out=out, dataset=small_mnist, seed=0, log=_Log())
    assert again.ran == 0 and again.best_value == first.best_value
    assert again.test_accuracy == first.test_accuracy
    # A larger target resumes the study.
    more = tune(tiny_base(), SPACE, trials=7, out=out, dataset=small_mnist, seed=0, log=_Log())
    assert more.ran == 2 and len(more.rows) == 7
    assert more.best_value >= first.best_value

    with pytest.raises(ConfigError, match="^study_name: expected the search space"):
        tune(tiny_base(), SPACE[:2], trials=8, out=out, dataset=small_mnist, log=_Log())
    with pytest.raises(ConfigError, match="^study_name: expected the base config"):
        tune(tiny_base(epochs=1), SPACE, trials=8, out=out, dataset=small_mnist, log=_Log())
    # Another study name in the same storage is another study.
    other = tune(tiny_base(), SPACE[:1], trials=1, out=out, study_name="other", dataset=small_mnist)
    assert other.ran == 1 and other.study_name == "other"


def test_pruning_stops_trials_that_fall_behind(tmp_path, small_mnist):
    # A learning rate this low learns nothing in the first epoch; the pruner
    # stops those trials after it, once four trials finished.
    space = ["learning_rate=1e-6,1e-5,0.05,0.1", "hidden=16,32"]
    result = tune(
        tiny_base(epochs=3, optimizer="adam"),
        space,
        trials=12,
        out=tmp_path / "p",
        dataset=small_mnist,
        seed=1,
        log=_Log(),
    )
    states = {r["state"] for r in result.rows}
    assert "PRUNED" in states, result.table()
    pruned = [r for r in result.rows if r["state"] == "PRUNED"]
    assert all(r["epochs"] < 3 for r in pruned)
    assert result.best_config.learning_rate in (0.05, 0.1)

    plain = tune(
        tiny_base(epochs=2),
        ["learning_rate=1e-6,0.1"],
        trials=3,
        out=tmp_path / "np",
        dataset=small_mnist,
        pruning=False,
        log=_Log(),
    )
    assert {r["state"] for r in plain.rows} == {"COMPLETE"}


def test_cli_tune_on_a_folder_of_idx_files(tmp_path, capsys):
    from digitlab.cli.tune import add_parser

    data = write_idx_dataset(tmp_path / "data", n_train=120, n_test=40)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    argv = [
        "tune",
        "--space",
        "hidden=4..16:int",
        "--space",
        "optimizer=sgd,adam",
        "--set",
        "validation_size=40",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "cli"),
        "--data-dir",
        str(data),
        "--json",
        "--quiet",
    ]
    args = parser.parse_args(argv)
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["storage"] == f"sqlite:///{(tmp_path / 'cli' / 'study.db').resolve()}"
    assert len(report["trials"]) == 3 and report["best_config"]["epochs"] == 1
    assert report["best_config"]["validation_size"] == 40
    assert 0.0 <= report["test_accuracy"] <= 1.0

    args = parser.parse_args([*argv[:-2], "--trials", "4"])
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "best: trial" in text and "test accuracy" in text
    assert len(json.loads((tmp_path / "cli" / "results.json").read_text())["trials"]) == 4


# --------------------------------------------------------------------------- several processes

WORKER = textwrap.dedent(
    """
    import json, sys
    from digitlab.config import TrainConfig
    from digitlab.data import load_dataset
    from digitlab.experiments.tune import tune

    out, storage, trials = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
    ray = {{"ray_address": sys.argv[4], "workers": 2}} if len(sys.argv) > 4 else {{}}
    base = TrainConfig.for_model("mlp", epochs=2, validation_size=1000, hidden=(16,))
    result = tune(
        base,
        {space!r},
        trials=trials,
        storage=storage,
        out=out,
        dataset=load_dataset().head(3000, 1000),
        log=sys.stderr,
        **ray,
    )
    print(json.dumps(result.to_dict()))
    """
).format(space=SPACE)


def _two_workers(
    tmp_path: Path, outs: list[Path], storage: str, trials: int, *extra: str
) -> list[dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(out), storage, str(trials), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for out in outs
    ]
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        reports.append({**json.loads(stdout.strip().splitlines()[-1]), "driver_pid": proc.pid})
    return reports


def _check_shared(reports: list[dict], storage: str, trials: int) -> None:
    import optuna

    study = optuna.load_study(study_name="digitlab", storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    # Each process stops once the study holds ``trials``: at most one more was in flight.
    assert trials <= len(finished) <= trials + 1
    assert len(study.trials) == len(finished)
    assert sum(r["ran"] for r in reports) == len(finished)
    assert all(r["ran"] >= 1 for r in reports), [r["ran"] for r in reports]
    pids = {t.user_attrs["record"]["pid"] for t in finished if "record" in t.user_attrs}
    assert len(pids) == 2
    best = max(t.value for t in finished if t.state == optuna.trial.TrialState.COMPLETE)
    for report in reports:
        assert report["best_value"] <= best
        assert 0.0 < report["test_accuracy"] <= 1.0
    last = max(reports, key=lambda r: len(r["trials"]))
    assert last["best_value"] == best and len(last["trials"]) == len(finished)


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path):
    out = tmp_path / "shared"
    reports = _two_workers(tmp_path, [out, out], "", trials=6)
    url = f"sqlite:///{(out / 'study.db').resolve()}"
    assert {r["storage"] for r in reports} == {url}
    _check_shared(reports, url, 6)


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on a free port of 127.0.0.1 (as ``nobody``
    when the tests run as root, which postgres refuses); its SQLAlchemy URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    bindir = Path(found[-1]).parent if found else None
    if bindir is None and shutil.which("initdb"):
        bindir = Path(shutil.which("initdb")).parent
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, postgres) not installed: apt-get "
            "install postgresql"
        )
    pytest.importorskip("psycopg2")
    root = Path(tempfile.mkdtemp(prefix="digitlab-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "nobody", "--"]
    data = root / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = {"cwd": "/", "capture_output": True, "text": True, "timeout": 120}
    done = subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        **run,
    )
    assert done.returncode == 0, done.stderr
    server = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        cwd="/",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg2

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres").close()
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {server.stderr.read()}") from None
                time.sleep(0.2)
        yield url
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], **run
        )
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(tmp_path, postgres_url, small_mnist):
    # Two machines' worth of processes: separate out folders, one study in the server.
    reports = _two_workers(tmp_path, [tmp_path / "a", tmp_path / "b"], postgres_url, trials=6)
    _check_shared(reports, postgres_url, 6)
    assert reports[0]["storage"] == postgres_url
    # This process resumes the same study from a third folder: nothing left to run.
    result = tune(
        tiny_base(),
        SPACE,
        trials=6,
        storage=postgres_url,
        out=tmp_path / "c",
        dataset=small_mnist,
        log=_Log(),
    )
    assert result.ran == 0 and len(result.rows) == max(len(r["trials"]) for r in reports)


@pytest.mark.slow
def test_trials_run_as_ray_tasks_on_a_cluster(tmp_path, ray_cluster):  # noqa: F811
    out = tmp_path / "ray"
    (report,) = _two_workers(tmp_path, [out], "", 4, ray_cluster["address"])
    import optuna

    study = optuna.load_study(study_name="digitlab", storage=report["storage"])
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 4 <= len(finished) <= 5 and report["ran"] == len(finished)
    pids = {t.user_attrs["record"]["pid"] for t in finished if "record" in t.user_attrs}
    assert pids and report["driver_pid"] not in pids  # trained in Ray worker processes
    assert 0.0 < report["test_accuracy"] <= 1.0


class _Log:
    """A log that keeps its lines (and shows them when a test fails)."""

    def __init__(self):
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        sys.stdout.write(text)
        return len(text)

    def flush(self) -> None:
        pass
