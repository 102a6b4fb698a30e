"""The ``digitlab`` command end to end, as a user runs it (real processes, real MNIST)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import RUN_FILES


def digitlab(*args, cwd=None, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "digitlab", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stderr}")
    return result


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run"
    result = digitlab("train", "--epochs", "1", "--hidden", "64", "--run-dir", path, "--json")
    return path, json.loads(result.stdout)


def test_train_json_reports_params_run_dir_and_eval(quick_run):
    path, out = quick_run
    assert out["run_dir"] == str(path)
    assert out["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert out["eval"]["set"] == "validation" and out["eval"]["size"] == 15_000
    assert 0.8 < out["eval"]["accuracy"] < 1.0 and out["eval"]["loss"] > 0
    assert (path / "model.keras").is_file() and (path / "confusion_matrix.png").is_file()


def test_evaluate_reproduces_training_metrics(quick_run):
    path, out = quick_run
    again = json.loads(digitlab("evaluate", path, "--json").stdout)
    assert again["eval"]["accuracy"] == pytest.approx(out["eval"]["accuracy"])
    test = json.loads(digitlab("evaluate", path, "--set", "test", "--json").stdout)
    assert test["eval"]["set"] == "test" and test["eval"]["size"] == 10_000


def test_predict_index_prints_ten_probabilities(quick_run):
    path, _ = quick_run
    out = json.loads(digitlab("predict", path, "--index", "7", "--json").stdout)
    assert len(out["probabilities"]) == 10
    assert sum(out["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    assert out["digit"] == max(range(10), key=lambda d: out["probabilities"][d])
    text = digitlab("predict", path, "--index", "7").stdout
    assert f"prediction: {out['digit']}" in text and text.count("\n") >= 11


def test_data_info_json():
    out = json.loads(digitlab("data", "info", "--json").stdout)
    assert out["train"]["count"] == 60_000 and out["test"]["count"] == 10_000
    assert out["train"]["image_shape"] == [28, 28] and out["train"]["dtype"] == "uint8"
    assert out["sha256"]["train_labels"].startswith("65a50cbb")
    assert out["checksums"].startswith("verified")


def test_data_show_writes_png_and_prints_terminal_image(tmp_path):
    out = tmp_path / "grid.png"
    digitlab("data", "show", "--count", "16", "--out", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = digitlab("data", "show", "--index", "0").stdout
    assert text.startswith("train image 0: label 5")
    assert len(text.splitlines()) == 29 and "█" in text


def test_data_fetch_verifies():
    out = json.loads(digitlab("data", "fetch", "--json").stdout)
    assert out["verified"] is True and set(out["files"]) == {
        "train_images",
        "train_labels",
        "test_images",
        "test_labels",
    }


def test_bad_input_gives_one_line_and_exit_2(tmp_path, quick_run):
    path, _ = quick_run
    assert_one_line_error(digitlab("train", "--data-dir", tmp_path / "nope", check=False), "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (broken / name).write_bytes(b"<html>404 Not Found</html>")
    assert_one_line_error(
        digitlab("data", "info", "--data-dir", broken, check=False), "broken", "HTML"
    )
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    (no_model / "config.json").write_text((path / "config.json").read_text())
    assert_one_line_error(digitlab("evaluate", no_model, check=False), "model.keras")
    assert_one_line_error(
        digitlab("predict", path, "--index", "15000", check=False), "--index", "0..14999"
    )
    assert_one_line_error(digitlab("train", "--hidden", "12,x", check=False), "--hidden")
    assert_one_line_error(digitlab("train", "--epochs", "0", check=False), "--epochs")
    assert_one_line_error(digitlab("evaluate", tmp_path / "none", check=False), "run folder")
    assert_one_line_error(digitlab("train", "--run-dir", path, check=False), "already exists")


@pytest.mark.slow
def test_default_train_is_the_tutorial(tmp_path):
    """``digitlab train`` with no options: 101,770 parameters, accuracy in the tutorial's band."""
    result = digitlab("train", "--json", "--quiet", cwd=tmp_path)
    out = json.loads(result.stdout)
    assert out["params"] == 101_770
    assert out["config"]["epochs"] == 20 and out["config"]["optimizer"] == "sgd"
    assert out["eval"]["set"] == "validation" and out["eval"]["size"] == 15_000
    assert 0.92 <= out["eval"]["accuracy"] <= 0.94
    run_dir = tmp_path / out["run_dir"]
    assert run_dir.parent == tmp_path / "runs"
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES
