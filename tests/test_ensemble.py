"""digitlab ensemble: several runs averaged into one run folder every command takes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from digitlab.config import TrainConfig
from digitlab.ensemble import ensemble
from digitlab.errors import ConfigError
from digitlab.runs import load_run
from digitlab.training import train


@pytest.fixture(scope="module")
def subset(mnist):
    return mnist.head(6000, 2000)


@pytest.fixture(scope="module")
def members(subset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (1, 2, 3):
        config = TrainConfig.for_model(
            "mlp", optimizer="adam", epochs=2, split="official", seed=seed
        )
        path = folder / f"seed{seed}"
        train(config, dataset=subset, run_dir=path, verbose=0, plots_enabled=False)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def averaged(members, subset, tmp_path_factory):
    return ensemble(members, dataset=subset, run_dir=tmp_path_factory.mktemp("e") / "run")


def test_ensemble_is_a_run_that_averages_its_members(averaged, members, subset):
    runs = [load_run(path) for path in members]
    loaded = load_run(averaged.path)
    assert loaded.config.model == "ensemble"
    x = subset.x_test.astype(np.float32) / 255.0
    # Without its own temperature, the network is the mean of the members' calibrated answers.
    raw = loaded.classifier.model.predict(x[:200], verbose=0)
    mean = np.mean([run.predict_proba(x[:200]) for run in runs], axis=0)
    np.testing.assert_allclose(raw, mean, atol=1e-5)
    accuracies = [run.metrics.accuracy for run in runs]
    assert loaded.metrics.accuracy >= min(accuracies)
    assert loaded.metrics.set == "test" and loaded.metrics.size == len(subset.x_test)
    described = loaded.info.extra["ensemble"]["members"]
    assert [m["seed"] for m in described] == [1, 2, 3]
    assert loaded.info.calibration["fitted_on"] == "validation"
    assert loaded.metrics.ece < 0.05
    assert "ood" in json.loads((averaged.path / "metrics.json").read_text())
    assert (averaged.path / "report.html").is_file()


def test_members_share_the_held_out_images_whatever_their_seed(members):
    sizes = {load_run(path).info.data.train_size for path in members}
    assert len(sizes) == 1


def test_every_command_takes_the_ensemble(averaged, tmp_path):
    def digitlab(*args):
        command = [sys.executable, "-m", "digitlab", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    evaluated = digitlab("evaluate", averaged.path, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    predicted = digitlab("predict", averaged.path, "--index", 0, "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["digit"] in range(10)


def test_ensemble_refuses_what_it_cannot_average(members, subset, tmp_path, capsys):
    with pytest.raises(ConfigError, match="at least 2"):
        ensemble(members[:1], dataset=subset, run_dir=tmp_path / "one")
    validation = TrainConfig.for_model("mlp", epochs=1, seed=7, validation_size=1000)
    other = train(
        validation, dataset=subset, run_dir=tmp_path / "v", verbose=0, plots_enabled=False
    )
    with pytest.raises(ConfigError, match="split"):
        ensemble([members[0], other.path], dataset=subset, run_dir=tmp_path / "mixed")
    from digitlab.cli import main

    assert main(["ensemble", str(members[0]), "--run-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at least 2" in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_ensemble_exports_to_onnx_with_digitlabs_answers(averaged, mnist, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="needs digitlab[export]")
    out = tmp_path / "ensemble.onnx"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "export",
            str(averaged.path),
            "--format",
            "onnx",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    x = mnist.x_test.astype(np.float32) / 255.0  # the 10,000 official test images
    want = load_run(averaged.path).predict_proba(x)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": x})[0]
    assert float(np.abs(got - want).max()) <= 1e-5
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    assert (tmp_path / "detector.onnx").is_file()


def test_runs_of_0_1_0_are_members_like_any_other():
    """Their run.json records no model_format; the model file says Keras."""
    from pathlib import Path

    from digitlab.ensemble import _check_members

    fixtures = Path(__file__).parent / "fixtures"
    old = [load_run(fixtures / "cnn-fast-0.1.0"), load_run(fixtures / "mlp-0.1.0")]
    assert old[0].info.model_format is None and old[0].model_format.name == "keras"
    _check_members(old)
    with pytest.raises(ConfigError, match=r"gnb-0\.1\.0 is a 'skops' run"):
        _check_members([*old, load_run(fixtures / "gnb-0.1.0")])
