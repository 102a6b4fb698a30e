"""The tutorial notebook: stored with its outputs (readable, plots and all, on
any plain viewer), and those outputs are what the current code makes."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_run", ROOT / "notebooks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images(notebook) -> int:
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    )


def test_notebook_is_stored_with_its_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.execution_count is not None, cell.source[:60]
    assert _images(notebook) >= 9  # samples, curves, softmax, confusion, mistakes, sweep, inside
    text = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert "Total params: 101,770" in text and "plain Keras: validation accuracy 0.9" in text
    # The tutorial's own Keras code is shown and run, not hidden behind digitlab.
    sources = "\n".join(cell.source for cell in code)
    assert "keras.Sequential(" in sources
    assert 'keras.layers.Dense(128, activation="relu")' in sources


@pytest.mark.slow
def test_notebook_runs_every_cell_and_its_stored_outputs_are_current(tmp_path, monkeypatch):
    import nbformat

    # One epoch per training: the notebook's own parameter, read from the environment.
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders land here
    runner = _runner()
    fresh = runner.execute(NOTEBOOK, tmp_path)  # raises CellExecutionError naming the cell
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert runner.shape(fresh) == runner.shape(stored), "run: python notebooks/run.py"

    outputs = "\n".join(
        output.get("text", "")
        for cell in fresh.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert "Total params: 101,770" in outputs
    assert "validation accuracy 0." in outputs
    assert "| mlp |" in outputs and "| rf |" in outputs
    assert _images(fresh) >= 9
    assert any(path.name.startswith("digitlab-notebook-") for path in tmp_path.iterdir())
