"""The tutorial notebook runs from top to bottom on the real MNIST."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tutorial.ipynb"


def test_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_notebook_runs_every_cell(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # One epoch per training: the notebook's own parameter, read from the environment.
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's run folders land here
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = "\n".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )
    assert "Total params: 101,770" in outputs
    assert "validation accuracy 0." in outputs
    assert "| mlp |" in outputs and "| rf |" in outputs
    images = sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    )
    assert images >= 7  # samples, curves, softmax, confusion, mistakes, sweep plots
    assert any(path.name.startswith("digitlab-notebook-") for path in tmp_path.iterdir())
