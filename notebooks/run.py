"""Execute the tutorial notebook and store it with its outputs, so that it can
be read, plots and all, on any plain viewer (GitHub's included).

    python notebooks/run.py            # 20 epochs, as the tutorial
    DIGITLAB_NOTEBOOK_EPOCHS=1 python notebooks/run.py --check   # run, compare, write nothing

``--check`` (what the tests do) executes the notebook and fails if the
outputs it makes differ in shape from the stored ones (another number of
outputs, another kind, a missing plot): the stored notebook must be the one
the current code makes.  Needs ``pip install 'digitlab[notebook]'`` or the
test extra (nbclient, ipykernel).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).with_name("tutorial.ipynb")


def execute(path: Path = NOTEBOOK, workdir: Path | None = None):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    folder = workdir or Path(tempfile.mkdtemp(prefix="digitlab-notebook-run-"))
    NotebookClient(
        notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook


def shape(notebook) -> list[list[str]]:
    """Per code cell, the kinds of its outputs (stream name or MIME types)."""
    kinds = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell_kinds = []
        for output in cell.outputs:
            if output.output_type == "stream":
                cell_kinds.append(f"stream:{output.name}")
            else:
                cell_kinds.append(
                    "+".join(sorted(k for k in output.get("data", {}) if k != "text/plain"))
                    or output.output_type
                )
        # Keras and JAX may warn on stderr; how often is no part of the contract.
        kinds.append(sorted(set(k for k in cell_kinds if k != "stream:stderr")))
    return kinds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored outputs")
    args = parser.parse_args(argv)
    import nbformat
    import nbformat.validator

    stored = nbformat.read(NOTEBOOK, as_version=4)
    fresh = execute()
    if args.check:
        if shape(fresh) != shape(stored):
            print(
                "notebooks/tutorial.ipynb: its stored outputs are not what the code makes "
                "now: run python notebooks/run.py",
                file=sys.stderr,
            )
            return 1
        print("notebook outputs are current")
        return 0
    for cell in fresh.cells:  # no local paths or timings in cell metadata
        cell.metadata.pop("execution", None)
    _, fresh = nbformat.validator.normalize(fresh)
    nbformat.write(fresh, NOTEBOOK)
    print(f"wrote {NOTEBOOK} with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
