"""Model file formats, behind one interface.

A :class:`ModelFormat` saves a trained model into a run folder, loads it back
and wraps it as a :class:`~digitlab.inference.classifier.Classifier`.  The run
records which format it used (``run.json``: ``model_format``); runs written by
digitlab 0.1.0 are recognised by their model file.  A new format (ONNX, say)
is one more entry in :data:`FORMATS`.

Loading is safe by construction: Keras archives load in ``safe_mode`` (no
Python lambdas), skops files only with scikit-learn and NumPy types (never
pickle).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digitlab._files import one_line
from digitlab.errors import RunError
from digitlab.inference.classifier import Classifier, KerasClassifier, SklearnClassifier

#: Types a baseline's skops file may hold beyond skops' default-trusted
#: scikit-learn and NumPy types.  Anything else means the file was tampered with.
EXTRA_TRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree"})


@dataclass(frozen=True)
class ModelFormat:
    """How one kind of model file is written and read.

    ``save(model, file)`` writes the model; ``load(file)`` reads it back (the
    raw model); ``wrap(model, class_names=, image_shape=, **options)`` makes it
    a :class:`Classifier`.
    """

    name: str
    file_name: str
    save: Callable[[object, Path], None]
    load: Callable[[Path], object]
    wrap: Callable[..., Classifier]
    #: ``quick(file, class_names=, image_shape=)``: a classifier that needs no
    #: heavy library (None where it cannot), for one-off predictions.
    quick: Callable[..., Classifier | None] | None = None

    def load_classifier(
        self, folder, *, class_names, image_shape, quick: bool = False, **options
    ) -> Classifier:
        """Load ``folder/file_name`` and wrap it; :class:`RunError` if that fails.
        With ``quick``, the format's :attr:`quick` loader is tried first."""
        file = Path(folder) / self.file_name
        if quick and self.quick is not None:
            found = self.quick(file, class_names=class_names, image_shape=image_shape)
            if found is not None:
                return found
        model = self.load(file)
        try:
            return self.wrap(model, class_names=class_names, image_shape=image_shape, **options)
        except RunError as exc:
            raise RunError(f"{file}: {exc}") from None


# --------------------------------------------------------------------------- Keras


def _save_keras(model, file: Path) -> None:
    model.save(file)


#: The most a model archive may unpack to, and the most members it may hold:
#: the largest model digitlab trains is a few hundred MB, a zip bomb is far more.
MAX_UNPACKED_BYTES = 2 * 2**30
MAX_MEMBERS = 1000
#: The most a member may expand relative to its compressed size (float32
#: weights deflate by 1.1-5x; a bomb by about 1000x), checked for members over 1 MB.
MAX_RATIO = 200


def check_archive(file: Path, *, kind: str) -> None:
    """Refuse, before anything unpacks it, a model file that is not a regular
    file, not a zip, or whose members would unpack to too much."""
    if file.is_symlink() or not file.is_file():
        raise RunError(f"{file}: expected a {kind} (a regular file). Found something else")
    try:
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise RunError(f"{file}: expected a {kind}. {one_line(exc)}") from None
    if len(members) > MAX_MEMBERS:
        raise RunError(
            f"{file}: expected a {kind} of at most {MAX_MEMBERS} files. Found {len(members):,}"
        )
    total = sum(member.file_size for member in members)
    if total > MAX_UNPACKED_BYTES:
        raise RunError(
            f"{file}: expected a {kind} that unpacks to at most "
            f"{MAX_UNPACKED_BYTES // 2**30} GB. It would unpack to {total:,} bytes"
        )
    for member in members:
        if member.file_size > 2**20 and member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise RunError(
                f"{file}: expected a {kind}. Its member {member.filename!r} would expand "
                f"{member.file_size / max(member.compress_size, 1):,.0f}-fold "
                f"({member.file_size:,} bytes): refusing to unpack it"
            )


def _load_keras(file: Path):
    from digitlab import layers  # noqa: F401  (registers digitlab's own Keras layers)
    from digitlab._backend import keras

    check_archive(file, kind="Keras model archive")

    try:
        # safe_mode (the default) refuses to deserialise arbitrary Python lambdas.
        return keras().saving.load_model(file, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise RunError(f"{file}: expected a Keras model archive. {one_line(exc)}") from None


def _wrap_keras(model, *, class_names, image_shape, **_options) -> Classifier:
    return KerasClassifier(model, class_names=class_names, image_shape=image_shape)


def _quick_keras(file: Path, *, class_names, image_shape) -> Classifier | None:
    """digitlab's own networks computed with NumPy, without importing Keras."""
    import os

    if os.environ.get("KERAS_BACKEND", "jax") != "jax":
        return None  # the user chose another backend: use it
    from digitlab.inference import numpy_keras

    check_archive(file, kind="Keras model archive")
    network = numpy_keras.load(file)
    if network is None:
        return None
    try:
        return numpy_keras.NumpyClassifier(
            network, class_names=class_names, image_shape=image_shape
        )
    except RunError as exc:
        raise RunError(f"{file}: {exc}") from None


# --------------------------------------------------------------------------- skops


def _save_skops(classifier, file: Path) -> None:
    import skops.io

    estimator = classifier.model if isinstance(classifier, Classifier) else classifier
    # Deflate: k-NN's stored images shrink about five-fold.
    skops.io.dump(estimator, file, compression=zipfile.ZIP_DEFLATED)


def _load_skops(file: Path):
    """The estimator in ``file``, refusing any type outside scikit-learn/NumPy
    (and :data:`EXTRA_TRUSTED_TYPES`) before any of it is constructed."""
    import skops.io

    check_archive(file, kind="skops model file")
    data = file.read_bytes()
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # skops/zipfile raise many types for a damaged archive
        raise RunError(f"{file}: expected a skops model file. {one_line(exc)}") from None
    unexpected = sorted(set(untrusted) - EXTRA_TRUSTED_TYPES)
    if unexpected:
        raise RunError(
            f"{file}: expected only scikit-learn and NumPy types. "
            f"Found untrusted type(s) {', '.join(unexpected)}; refusing to load it"
        )
    try:
        return skops.io.load(io.BytesIO(data), trusted=list(untrusted))
    except Exception as exc:
        raise RunError(f"{file}: expected a skops model file. {one_line(exc)}") from None


def _wrap_skops(
    estimator, *, class_names, image_shape, expected_class=None, model_name=None, **_options
) -> Classifier:
    found = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    if expected_class is not None and expected_class not in (found, type(estimator).__name__):
        raise RunError(f"expected a {expected_class} for model {model_name!r}. Found {found}")
    return SklearnClassifier(
        estimator,
        class_names=class_names,
        image_shape=image_shape,
        one_blas_thread=type(estimator).__name__ != "KNeighborsClassifier",
    )


FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("keras", "model.keras", _save_keras, _load_keras, _wrap_keras, _quick_keras),
        ModelFormat("skops", "model.skops", _save_skops, _load_skops, _wrap_skops),
    )
}


def get_format(name: str) -> ModelFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise RunError(
            f"model_format: expected one of {', '.join(FORMATS)}. Received: {name!r}"
        ) from None


def detect_format(folder) -> ModelFormat | None:
    """The format whose model file is in ``folder`` (runs of digitlab 0.1.0
    record none), or None when there is no model file."""
    folder = Path(folder)
    for model_format in FORMATS.values():
        if (folder / model_format.file_name).is_file():
            return model_format
    return None
