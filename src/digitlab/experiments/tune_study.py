"""Optuna studies for ``digitlab tune``: storage, sampler, pruner, identity."""

from __future__ import annotations

import re
import time

from digitlab._files import one_line
from digitlab.errors import ConfigError

DEFAULT_STUDY = "digitlab"


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "tune: expected Optuna to be installed. Install it with: pip install 'digitlab[tune]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def redact(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: _storage reports it
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", str(url))


def open_storage(optuna, url: str, shown: str):
    from sqlalchemy import exc as sql_errors

    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True}
    last = None
    for attempt in range(5):  # two processes creating the same new database may collide
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except (ImportError, sql_errors.ArgumentError) as exc:  # no such driver, a bad URL
            last = exc
            break
        except Exception as exc:  # any driver's error (refused, locked), retried, then reported
            last = exc
            time.sleep(0.5 * (attempt + 1))
    raise ConfigError(
        f"storage: expected an SQLAlchemy URL of a database digitlab can use. Received: {shown} "
        f"({one_line(last)})"
    )


def make_sampler(optuna, seed: int):
    return optuna.samplers.TPESampler(seed=seed % 2**32)


def load_study(optuna, storage, name: str, shown: str, seed: int, pruning: bool):
    pruner = make_pruner(optuna, pruning)
    last = None
    for attempt in range(5):
        try:
            return optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=make_sampler(optuna, seed),
                pruner=pruner,
                load_if_exists=True,
            )
        except ValueError as exc:  # a study of another direction
            raise ConfigError(f"study_name: {name!r} in {shown}: {one_line(exc)}") from None
        except Exception as exc:  # concurrent creation: retry
            last = exc
            time.sleep(0.5 * (attempt + 1))
    raise ConfigError(f"storage: could not open study {name!r} in {shown} ({one_line(last)})")


def make_pruner(optuna, pruning: bool):
    if not pruning:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)


def check_identity(study, identity: dict, name: str) -> None:
    recorded = study.user_attrs.get("digitlab")
    if recorded is None:
        study.set_user_attr("digitlab", identity)
        return
    if not isinstance(recorded, dict):
        raise ConfigError(f"study_name: expected {name!r} to be a digitlab study. It is not")
    differs = [key for key in ("base", "space", "data") if recorded.get(key) != identity[key]]
    if differs:
        what = {"base": "base config", "space": "search space", "data": "data"}
        raise ConfigError(
            f"study_name: expected the {', '.join(what[k] for k in differs)} that study {name!r} "
            f"was started with; use another --study or --out. It has space "
            f"{' '.join(recorded.get('space', []))}"
        )
