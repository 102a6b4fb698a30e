"""Which classes a dataset's labels stand for, and refusing labels that fit none.

Labels are class indices ``0..K-1``.  With declared class names (``classes.json``,
``classes.txt``, an argument, or a known dataset's names) K is their number
and any label outside ``0..K-1`` is refused; classes without images are
allowed.  Without them, K is inferred, and only when the labels leave no
doubt:

* every class from 0 to the largest training label occurs in the training
  labels (a stray 255 among digits would otherwise make 246 classes);
* every test label is one of those classes;
* every one of those classes occurs in the test labels too (a stray 10 in the
  training labels of a ten-digit dataset would otherwise make an eleventh
  class that is never evaluated).

Each refusal is one :class:`DataError` naming the file, the index and value of
the first offending label, and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from digitlab.errors import DataError

_DECLARE = "name the classes in classes.json or classes.txt to allow classes without images"


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _refuse(path, labels: np.ndarray, mask: np.ndarray, expected: str, why: str = "") -> DataError:
    index = _first(mask)
    return DataError(
        f"{path}: expected {expected}; label {int(labels[index])} at index {index} "
        f"is not one of them{why}"
    )


def check_labels(
    train: np.ndarray,
    test: np.ndarray,
    *,
    train_path,
    test_path,
    class_names: tuple[str, ...] | None = None,
    names_from: str = "",
) -> tuple[str, ...]:
    """The class names of integer label arrays ``train`` and ``test`` (rank 1).

    ``class_names``: the declared names, or ``None`` to infer ``"0".."K-1"``
    under the rules of the module docstring; ``names_from`` says where declared
    names come from (``"as named in /d/classes.txt"``).  Raises
    :class:`DataError` for the first label that breaks them.
    """
    if class_names is not None:
        k = len(class_names)
        for path, labels in ((train_path, train), (test_path, test)):
            bad = (labels < 0) | (labels >= k)
            if bad.any():
                raise _refuse(path, labels, bad, f"labels in 0..{k - 1} ({k} classes) {names_from}")
        return tuple(class_names)

    for path, labels in ((train_path, train), (test_path, test)):
        if (labels < 0).any():
            raise _refuse(path, labels, labels < 0, "class labels 0, 1, 2, ...")
    present = np.unique(train)
    gaps = np.flatnonzero(present != np.arange(len(present)))
    if gaps.size:
        missing = int(gaps[0])  # the smallest class without a training image
        expected = f"labels 0..{missing - 1}" if missing else "labels starting at 0"
        raise _refuse(
            train_path,
            train,
            train > missing,
            f"{expected} (without declared class names, every class from 0 to the largest "
            f"label must occur in the training labels, and none is {missing})",
            f"; {_DECLARE}",
        )
    k = len(present)
    if (test >= k).any():
        raise _refuse(
            test_path,
            test,
            test >= k,
            f"labels 0..{k - 1}, the classes of the training labels {train_path}",
        )
    untested = np.setdiff1d(present, np.unique(test))
    if untested.size:
        raise _refuse(
            train_path,
            train,
            np.isin(train, untested),
            f"labels of classes that also occur in the test labels {test_path}",
            f" (class {int(untested[0])} has no test image; {_DECLARE})",
        )
    return tuple(str(i) for i in range(k))


def read_class_names(folder: Path) -> tuple[tuple[str, ...], Path] | None:
    """The class names declared in ``folder`` (``classes.json``: a JSON list;
    ``classes.txt``: one per line) and the file they came from, or ``None``."""
    as_json, as_text = folder / "classes.json", folder / "classes.txt"
    if as_json.is_file():
        try:
            names = json.loads(as_json.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{as_json}: expected a JSON list of class names. {exc}") from None
        if not isinstance(names, list) or not names:
            raise DataError(f"{as_json}: expected a non-empty JSON list of class names")
        return tuple(str(n) for n in names), as_json
    if as_text.is_file():
        try:
            lines = as_text.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{as_text}: expected UTF-8 text, one class name per line. {exc}"
            ) from None
        names = [line.strip() for line in lines if line.strip()]
        if not names:
            raise DataError(f"{as_text}: expected one class name per line. Found none")
        return tuple(names), as_text
    return None
