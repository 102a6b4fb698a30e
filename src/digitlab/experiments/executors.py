"""Where a sweep's trials run: in this process, in a pool of fresh local
processes, or as tasks on a Ray cluster.

Each executor calls ``trial(config, dataset, keep_dir=...)`` (a module-level
function, so it pickles by reference) once per pending ``(key, config)`` and
reports every outcome, in the order trials finish, as ``finished(key, config,
record, error)``: the record on success, else None and a one-line error.
A :class:`~digitlab.errors.DigitlabError` from a trial is reported and the
others go on; any other exception ends the sweep (on Ray, where it is mostly
the environment, it is reported too).
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from digitlab import data as data_module
from digitlab._files import one_line
from digitlab.config import TrainConfig
from digitlab.errors import ConfigError, DigitlabError

Pending = Sequence[tuple[str, TrainConfig]]
Finished = Callable[[str, TrainConfig, "dict | None", "str | None"], None]


def where(workers: int, ray_address: str | None) -> str:
    """Where :func:`run_trials` runs them, for the progress log."""
    if ray_address:
        return f"on the Ray cluster at {ray_address}"
    if workers > 1:
        return f"in {workers} worker processes"
    return "in this process"


def run_trials(
    trial: Callable,
    pending: Pending,
    dataset: data_module.Dataset,
    *,
    keep_root: Path | None,
    finished: Finished,
    workers: int = 1,
    ray_address: str | None = None,
) -> None:
    """Run every pending trial on Ray (``ray_address``), in ``workers`` local
    processes, or here; ``keep_root / key`` is each trial's kept run folder."""
    if ray_address:
        _run_on_ray(ray_address, trial, pending, dataset, keep_root, finished)
    elif workers > 1:
        _run_in_pool(workers, trial, pending, dataset, keep_root, finished)
    else:
        for key, config in pending:
            run = functools.partial(trial, config, dataset, keep_dir=_keep_dir(keep_root, key))
            _report(finished, key, config, run)


def _report(finished: Finished, key: str, config: TrainConfig, result: Callable) -> None:
    """``finished`` with what ``result()`` returns, or with the DigitlabError it raises."""
    try:
        record = result()
    except DigitlabError as exc:
        finished(key, config, None, str(exc))
    else:
        finished(key, config, record, None)


def _keep_dir(keep_root: Path | None, key: str) -> str | None:
    return str(keep_root / key) if keep_root is not None else None


# --------------------------------------------------------------------------- process pool

_WORKER_DATASET: data_module.Dataset | None = None


def _init_worker(dataset: data_module.Dataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _pool_trial(trial: Callable, config: TrainConfig, keep_dir) -> dict:
    if _WORKER_DATASET is None:  # pragma: no cover - set by the initializer
        raise RuntimeError("worker started without its dataset")
    return trial(config, _WORKER_DATASET, keep_dir=keep_dir)


def _run_in_pool(workers, trial, pending, dataset, keep_root, finished: Finished) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: each worker starts a fresh interpreter that imports
    # digitlab (and so chooses the Keras backend) itself; forking a process
    # that already runs JAX's threads can deadlock.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(dataset,),
    ) as pool:
        futures = {
            pool.submit(_pool_trial, trial, config, _keep_dir(keep_root, key)): (key, config)
            for key, config in pending
        }
        try:
            for future in as_completed(futures):
                _report(finished, *futures[future], future.result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


# --------------------------------------------------------------------------- Ray


def _ray_trial(trial: Callable, config_dict: dict, dataset, keep_dir) -> dict:
    return trial(TrainConfig.from_dict(config_dict), dataset, keep_dir=keep_dir)


def _run_on_ray(address: str, trial, pending, dataset, keep_root, finished: Finished) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    host, _, port = address.rpartition(":")
    if host.strip("[]") in ("127.0.0.1", "localhost", "::1"):
        # A cluster on this machine: without this Ray swaps the loopback address
        # for the machine's public one, where a loopback-only cluster is not.
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise ConfigError(
                f"ray_address: ray was imported before digitlab could keep it on "
                f"loopback for {address}; set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 first"
            )
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if address != "auto":
        _check_reachable(address, host.strip("[]"), port)
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "ray_address: expected the ray package. Install it with pip install 'digitlab[cluster]'"
        ) from None
    try:
        ray.init(
            address=address,
            log_to_driver=False,
            # Workers import digitlab fresh; give them the driver's backend choice.
            runtime_env={"env_vars": {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}},
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"ray_address: could not connect to a Ray cluster at {address}. {one_line(exc)}"
        ) from None
    try:
        _gather_ray(ray, trial, pending, dataset, keep_root, finished)
    finally:
        ray.shutdown()


def _gather_ray(ray, trial, pending, dataset, keep_root, finished: Finished) -> None:
    # Once into the object store: every task on every node reads the same
    # copy (zero-copy on the driver's node) instead of loading files itself.
    dataset_ref = ray.put(dataset)
    task = ray.remote(num_cpus=1, max_retries=0)(_ray_trial)
    futures = {
        task.remote(trial, config.to_dict(), dataset_ref, _keep_dir(keep_root, key)): (key, config)
        for key, config in pending
    }
    remaining = list(futures)
    while remaining:
        ready, remaining = ray.wait(remaining, num_returns=1)
        key, config = futures[ready[0]]
        try:
            record = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            # On a cluster this is mostly the environment (digitlab missing on
            # a node, a worker killed for memory): one line, and go on.
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, DigitlabError):
                message = str(cause)
            else:
                message = f"{type(cause).__name__}: {one_line(cause)}"
            finished(key, config, None, message)
        else:
            finished(key, config, record, None)


def _check_reachable(address: str, host: str, port: str) -> None:
    """Fail in seconds on a wrong address: Ray itself retries for minutes."""
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address: expected HOST:PORT or auto. Received: {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise ConfigError(
            f"ray_address: could not reach a Ray cluster at {address}. {exc.strerror or exc}"
        ) from None
