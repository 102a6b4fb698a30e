"""The structure: no import circles, a web app that loads inference code only,
a model kind added with one registration, run folders of digitlab 0.1.0 that
still load, evaluate and serve, and one schema that names what is wrong."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import digitlab
from digitlab import models
from digitlab.errors import ImageError, RunError
from digitlab.inference import Predictor, read_image
from digitlab.runs import load_run
from predict_helpers import client, encode, paper_digit, running_server

SRC = Path(digitlab.__file__).parent
FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUNS = ("mlp-0.1.0", "gnb-0.1.0", "cnn-fast-0.1.0")


# --------------------------------------------------------------------------- imports


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Every digitlab module → the digitlab modules it imports anywhere in its
    code (function-level imports included)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # `from pkg import module` imports that module; `from pkg import name`, pkg.
                subs = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t for t in subs if t in files] or [base]
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def test_no_import_circles_function_level_imports_included():
    graph = _import_graph()
    assert {"digitlab.training", "digitlab.inference.reading", "digitlab.serve.app"} <= set(graph)
    state: dict[str, int] = {}
    cycles = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_is_over_400_lines_without_a_reason():
    # The IDX reader/writer is the whole file format with its many malformed
    # cases: one module, by design.
    allowed = {"digitlab.data.idx", "digitlab.inference.images"}
    long = {
        _module_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py")
    }
    assert {m: n for m, n in long.items() if n > 450 and m not in allowed} == {}


FORBIDDEN = (
    "digitlab.training",
    "digitlab.experiments",
    "digitlab.models",
    "digitlab.plots",
    "digitlab.cli",
    "digitlab.export",
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("run", "also_forbidden"),
    # `import keras` itself loads matplotlib (keras.src.visualization) where it
    # is installed; a run without Keras shows that digitlab loads none of it.
    [("mlp-0.1.0", ()), ("gnb-0.1.0", ("matplotlib", "keras", "jax"))],
)
def test_the_web_app_loads_inference_code_only(run, also_forbidden):
    script = (
        "import sys, json\n"
        "from digitlab.serve.app import create_app\n"
        "from digitlab.inference import Predictor\n"
        "from digitlab.runs import load_run\n"
        f"app = create_app(Predictor(load_run({str(FIXTURES / run)!r})))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert "digitlab.inference.classifier" in loaded and "digitlab.runs.folder" in loaded
    forbidden = (*FORBIDDEN, *also_forbidden)
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert bad == []


# --------------------------------------------------------------------------- a new kind


def _fit_toy(config, parts, *, class_names, image_shape, verbose, log, callbacks):
    """A one-layer softmax classifier trained for ``config.epochs`` epochs."""
    import time

    from digitlab._backend import keras, set_seed

    k = keras()
    set_seed(config.seed)
    model = k.Sequential(
        [
            k.Input(shape=image_shape),
            k.layers.Flatten(),
            k.layers.Dense(len(class_names), activation="softmax"),
        ]
    )
    model.compile(
        optimizer=k.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    start = time.perf_counter()
    history = model.fit(
        parts.x_train, parts.y_train, epochs=config.epochs, batch_size=32, verbose=0
    )
    return models.TrainResult(
        model=model,
        params=int(model.count_params()),
        train_seconds=time.perf_counter() - start,
        history=history.history,
        epoch_seconds=[0.0] * config.epochs,
    )


@pytest.fixture
def toy_kind():
    kind = models.register(models.ModelKind("toy-softmax", "a softmax layer", _fit_toy, "keras"))
    yield kind
    models.unregister(kind.name)


@pytest.mark.slow
def test_a_kind_registered_in_one_place_trains_evaluates_predicts_and_serves(
    toy_kind, small_mnist, tmp_path
):
    assert "toy-softmax" in models.names()
    config = digitlab.TrainConfig.for_model("toy-softmax", epochs=2, validation_size=1000)
    run = digitlab.train(config, small_mnist, run_dir=tmp_path / "run", verbose=0)
    assert run.metrics.accuracy > 0.8 and run.info.model_format == "keras"
    assert run.params == 784 * 10 + 10

    loaded = digitlab.load_run(run.path)
    x = small_mnist.x_test[:200] / 255.0
    scores = digitlab.evaluate(loaded, x, small_mnist.y_test[:200])
    assert scores.accuracy > 0.75

    digit = small_mnist.x_test[0]
    photo = tmp_path / "digit.png"
    photo.write_bytes(encode(paper_digit(digit)))
    answer = read_image(Predictor(loaded), photo)
    assert answer["status"] in ("ok", "not sure") and len(answer["probabilities"]) == 10

    # The server runs in another process, where "toy-softmax" was never
    # registered: a run folder needs no registry to be read.
    with running_server(run.path, tmp_path / "log", "--quiet") as url, client(url) as http:
        model = http.get("/api/model").json()
        assert model["model"] == "toy-softmax" and model["params"] == 7850
        reply = http.post("/api/predict", files={"file": ("d.png", photo.read_bytes())})
        assert reply.status_code == 200
        assert reply.json()["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-5)


def test_registering_a_taken_name_is_an_error():
    kind = models.get("mlp")
    with pytest.raises(digitlab.ConfigError, match="already a registered model kind"):
        models.register(kind)


# --------------------------------------------------------------------------- 0.1.0 runs


@pytest.mark.parametrize("name", OLD_RUNS)
def test_a_run_folder_of_0_1_0_loads_and_evaluates_as_it_did(name, mnist):
    run = load_run(FIXTURES / name)
    assert run.info.model_format is None  # 0.1.0 recorded none: found by the model file
    assert run.class_names == tuple("0123456789") and run.image_shape == (28, 28)
    parts = digitlab.split(mnist, "tutorial", seed=run.config.seed)
    scores = digitlab.evaluate(run, parts.x_eval, parts.labels_eval)
    assert scores.accuracy == pytest.approx(run.metrics.accuracy, abs=1e-9)
    assert run.metrics["accuracy"] == run.metrics.accuracy  # 0.1.0 scripts read dicts


@pytest.mark.slow
def test_a_run_folder_of_0_1_0_serves(mnist, tmp_path):
    digit = mnist.x_test[0]
    with (
        running_server(FIXTURES / "cnn-fast-0.1.0", tmp_path, "--quiet") as url,
        client(url) as http,
    ):
        assert http.get("/api/model").json()["model"] == "cnn-fast"
        reply = http.post("/api/predict", json={"pixels": digit.tolist()})
        assert reply.status_code == 200 and reply.json()["digit"] == int(mnist.y_test[0])


def test_predict_proba_refuses_raw_pixels_and_wrong_shapes(mnist):
    run = load_run(FIXTURES / "mlp-0.1.0")
    with pytest.raises(ImageError, match="divide uint8 pixels by 255"):
        run.predict_proba(mnist.x_test[:3])
    with pytest.raises(ImageError, match=r"divide 0\.\.255 pixels by 255"):
        run.predict_proba(mnist.x_test[:3].astype(np.float32))
    with pytest.raises(ImageError, match=r"expected images of shape \(n, 28, 28\)"):
        run.predict_proba(np.zeros((3, 784), np.float32))
    with pytest.raises(ImageError, match="finite"):
        run.predict_proba(np.full((1, 28, 28), np.nan, np.float32))
    probs = run.predict_proba(mnist.x_test[:3] / 255.0)  # float64 is fine
    assert probs.shape == (3, 10) and probs.dtype == np.float32


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("metrics.json", {"accuracy": "x"}, r"metrics.json: field 'accuracy': expected a number"),
        ("metrics.json", {"confusion_matrix": "x"}, "field 'confusion_matrix': expected a list"),
        ("run.json", {"data": []}, r"run.json: field 'data': expected an object"),
        ("run.json", {"params": 1.5}, "field 'params': expected an integer"),
        ("history.json", {"loss": ["a"]}, r"history.json: field 'loss': expected a list"),
        ("run.json", {"model_format": "onnx"}, "model_format: expected one of keras, skops"),
    ],
)
def test_wrong_types_in_a_run_folder_are_one_run_error(tmp_path, file, change, message):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "mlp-0.1.0", target)
    data = json.loads((target / file).read_text())
    data.update(change)
    (target / file).write_text(json.dumps(data))
    with pytest.raises(RunError, match=message):
        load_run(target)


def test_a_model_that_does_not_fit_the_run_is_refused(tmp_path):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "mlp-0.1.0", target)
    info = json.loads((target / "run.json").read_text())
    info["data"]["class_names"] = ["a", "b", "c"]
    (target / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match="expected 3 outputs, one per class name. Found 10"):
        load_run(target)
    info["data"]["class_names"] = list("0123456789")
    info["data"]["image_shape"] = [32, 32]
    (target / "run.json").write_text(json.dumps(info))
    with pytest.raises(RunError, match=r"model of \(32, 32\) images .* Found one of \(28, 28\)"):
        load_run(target)


def test_serve_refuses_a_broken_run_at_start_up_with_one_line(tmp_path):
    target = tmp_path / "run"
    shutil.copytree(FIXTURES / "gnb-0.1.0", target)
    (target / "metrics.json").write_text('{"set": "validation", "size": "many"}')
    done = subprocess.run(
        [sys.executable, "-m", "digitlab", "serve", str(target), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "field 'size': expected an integer" in lines[0]
