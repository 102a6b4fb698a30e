"""``--runtime onnx``: predict and serve answer from the run's exported model on
onnxruntime, in processes that never import JAX or Keras, with the same
answers and the same HTTP contract as the native runtime."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predict_helpers import (
    RESULT_FIELDS,
    confident_digits,
    encode,
    paper_digit,
    served_answers,
    tiny_run,
)

pytest.importorskip("onnxruntime", reason="needs digitlab[export]")

FIXTURES = Path(__file__).parent / "fixtures"
HEAVY = ("jax", "keras", "jaxlib", "tensorflow", "torch")


@pytest.fixture(scope="module")
def exported(mnist, tmp_path_factory):
    """The tiny MLP run (calibrated) and a copy of the stored cnn-fast run, exported."""
    from digitlab.export import export_onnx
    from digitlab.runs import load_run

    mlp = tmp_path_factory.mktemp("runtime") / "mlp"
    shutil.copytree(tiny_run(mnist, tmp_path_factory), mlp)
    cnn = tmp_path_factory.mktemp("runtime") / "cnn-fast"
    shutil.copytree(FIXTURES / "cnn-fast-0.1.0", cnn)
    for folder in (mlp, cnn):
        export_onnx(load_run(folder))
    return {"mlp": mlp, "cnn-fast": cnn}


def _predict_in_fresh_process(args: list[str]) -> tuple[list, list[str]]:
    """``digitlab predict ARGS --json`` in a new interpreter: its answers and
    the modules it had loaded when done."""
    script = (
        "import json, sys\n"
        "from digitlab.cli import main\n"
        f"code = main({args!r})\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn-fast"])
def test_predict_on_onnx_imports_neither_jax_nor_keras_and_answers_the_same(
    kind, exported, mnist, tmp_path
):
    run_dir = exported[kind]
    photos = []
    for index in (0, 1, 2):
        photo = tmp_path / f"digit{index}.png"
        photo.write_bytes(encode(paper_digit(mnist.x_test[index])))
        photos.append(str(photo))
    args = ["predict", str(run_dir), *photos, "--json"]
    onnx_answers, modules = _predict_in_fresh_process([*args, "--runtime", "onnx"])
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert "onnxruntime" in modules
    native_answers, _ = _predict_in_fresh_process(args)
    for got, want in zip(onnx_answers, native_answers, strict=True):
        assert set(got) == RESULT_FIELDS
        assert got["status"] == want["status"] and got["digit"] == want["digit"]
        assert got["images"] == want["images"]
        assert np.abs(np.array(got["probabilities"]) - want["probabilities"]).max() <= 1e-5

    index_answer, modules = _predict_in_fresh_process(
        ["predict", str(run_dir), "--index", "7", "--set", "test", "--runtime", "onnx", "--json"]
    )
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
    assert index_answer["index"] == 7 and len(index_answer["probabilities"]) == 10


@pytest.mark.slow
def test_the_web_app_on_onnx_loads_no_jax_keras_or_scikit_learn(exported):
    script = (
        "import sys, json\n"
        "from digitlab.serve.app import create_app\n"
        "from digitlab.inference import Predictor\n"
        "from digitlab.runs import load_run\n"
        f"app = create_app(Predictor(load_run({str(exported['cnn-fast'])!r}, runtime='onnx')))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "digitlab.inference.onnx_runtime" in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in (*HEAVY, "sklearn", "skops")) == []


@pytest.mark.slow
def test_serve_on_onnx_keeps_the_http_contract(exported, mnist, tmp_path):
    run_dir = exported["mlp"]
    index = confident_digits(run_dir, mnist, 1)[0]
    photo = encode(paper_digit(mnist.x_test[index]))
    pixels = {"pixels": mnist.x_test[index].tolist()}
    answers = {}
    for runtime in ("onnx", "native"):
        served = served_answers(run_dir, tmp_path, runtime, photo, pixels)
        assert served["model"]["class_names"] == list("0123456789")
        assert served["model"]["backend"] == ("onnxruntime" if runtime == "onnx" else "jax.jit")
        assert len(served["why"]["why"]) == 1
        answers[runtime] = served["answers"]
    for got, want in zip(answers["onnx"], answers["native"], strict=True):
        assert set(got) == RESULT_FIELDS
        assert got["digit"] == want["digit"] == int(mnist.y_test[index])
        assert np.abs(np.array(got["probabilities"]) - want["probabilities"]).max() <= 1e-5


def test_serving_onnx_without_an_export_is_one_line(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURES / "gnb-0.1.0", run_dir)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "serve",
            str(run_dir),
            "--port",
            "0",
            "--runtime",
            "onnx",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "expected model.onnx in the run folder" in lines[0]
