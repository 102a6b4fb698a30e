"""An ensemble: several trained runs averaged into one run folder.

``digitlab ensemble RUN RUN ... --run-dir DIR`` (or :func:`ensemble`) loads
Keras runs of the same classes and evaluation set, and saves one network that
averages their calibrated probabilities: each member's own model, its
temperature (a :class:`~digitlab.layers.Temper` layer), then the mean; the
mean gets a temperature of its own, fitted like a training run's on the
validation images (on the official split, the held-out training images every
member left out, whatever its seed: :func:`digitlab.training.held_out`).  The
folder is an ordinary run (``model.keras``), so ``evaluate``, ``predict``,
``serve``, ``report`` and ``export`` take it as they take any run; its
evaluation set is the members' (the official test set for runs of
``--split official``), scored once here, with the "not a digit" figures.

``config.json`` is the first member's config with ``model: "ensemble"``;
``run.json`` lists the members (``ensemble``) and counts their training
seconds together.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from digitlab import data as data_module
from digitlab import runs
from digitlab.errors import ConfigError
from digitlab.inference.formats import get_format

#: Config fields the members must share: they decide the evaluation set.
SHARED_FIELDS = ("dataset", "split", "validation_size")


def _check_members(members: list) -> None:
    if len(members) < 2:
        raise ConfigError(f"runs: expected at least 2 runs to average. Received: {len(members)}")
    first = members[0]
    for member in members:
        found = member.model_format
        if found is None or found.name != "keras":
            raise ConfigError(
                f"runs: expected Keras runs to average into one network. {member.path} is "
                f"a {found.name if found else 'model-less'!r} run"
            )
        names, expected = member.classifier.class_names, first.classifier.class_names
        if tuple(names) != tuple(expected):
            raise ConfigError(
                f"runs: expected the same classes. {member.path} has {list(names)}, "
                f"{first.path} has {list(expected)}"
            )
        for name in SHARED_FIELDS:
            if getattr(member.config, name) != getattr(first.config, name):
                raise ConfigError(
                    f"runs: expected the same {name} (it decides the evaluation set). "
                    f"{member.path} has {getattr(member.config, name)!r}, {first.path} has "
                    f"{getattr(first.config, name)!r}"
                )
        if first.config.split != "official" and member.config.seed != first.config.seed:
            raise ConfigError(
                f"runs: expected one seed for a {first.config.split!r} split (the seed draws "
                f"the validation set). {member.path} has seed {member.config.seed}, "
                f"{first.path} {first.config.seed}; train the members with --split official"
            )


def build_network(members: list):
    """One Keras model: every member's network and temperature, then their mean."""
    from digitlab._backend import keras
    from digitlab.layers import Temper

    k = keras()
    shape = tuple(members[0].classifier.image_shape)
    inputs = k.Input(shape=shape)
    outputs = []
    for i, member in enumerate(members):
        network = member.classifier.model
        network.name = f"member_{i}"
        tempered = Temper(member.classifier.temperature, name=f"temper_{i}")(network(inputs))
        outputs.append(tempered)
    mean = k.layers.Average(name="mean")(outputs)
    return k.Model(inputs, mean, name="ensemble")


def ensemble(
    paths, *, dataset=None, run_dir=None, data_dir=None, plots_enabled: bool = True
) -> runs.Run:
    """Average the Keras runs at ``paths`` into one run folder (see the module).

    ``dataset`` is what the members were trained on (default: loaded from
    ``data_dir`` and the members' ``dataset``, as :func:`digitlab.train` does)."""
    from digitlab.training import calibrate, finish_run, held_out

    members = [runs.load_run(path) for path in paths]
    _check_members(members)
    first = members[0]
    config = dataclasses.replace(first.config, model="ensemble")
    if dataset is None:
        dataset = data_module.load_dataset(data_dir, dataset=first.config.dataset, progress=False)
    parts = data_module.split(
        dataset, config.split, seed=config.seed, validation_size=config.validation_size
    )
    model = build_network(members)
    model_format = get_format("keras")
    classifier = model_format.wrap(
        model, class_names=dataset.class_names, image_shape=dataset.image_shape
    )
    calibration = calibrate(classifier, held_out(parts, config)) if config.calibrate else None
    described = [
        {
            "run": str(Path(member.path).resolve()),
            "model": member.config.model,
            "seed": member.config.seed,
            "accuracy": member.metrics.accuracy,
            "temperature": member.classifier.temperature,
        }
        for member in members
    ]
    return finish_run(
        config=config,
        dataset=dataset,
        parts=parts,
        classifier=classifier,
        model=model,
        model_format=model_format,
        history=runs.History(curves={}, epoch_seconds=()),
        run_dir=run_dir,
        plots_enabled=plots_enabled,
        params=int(model.count_params()),
        train_seconds=float(sum(m.info.train_seconds for m in members)),
        train_size=int(first.info.data.train_size or 0),
        calibration=calibration,
        extra={"ensemble": {"members": described}},
    )
