"""The predict command: the digits in image files, or one image of the dataset."""

from __future__ import annotations

from pathlib import Path

from digitlab import _files
from digitlab.cli.output import EXIT_USAGE, fail, print_json
from digitlab.errors import ConfigError


def cmd_predict(args) -> int:
    if bool(args.images) == (args.index is not None):
        found = "both" if args.images else "neither"
        return fail(
            f"predict: expected image files or --index N, one of the two. Received: {found}"
        )
    if args.images:
        return _predict_files(args)
    return _predict_index(args)


def _predict_files(args) -> int:
    """Read each image file; a bad file is one stderr line, the others still run, exit 2."""
    from digitlab.errors import ImageError
    from digitlab.inference import Predictor, read_image
    from digitlab.runs import load_run

    predictor = Predictor(load_run(args.run, quick=True, runtime=args.runtime))
    results, failed, used_names = [], 0, set()
    for path in args.images:
        try:
            result = read_image(
                predictor,
                path,
                name=str(path),
                single=args.single,
                threshold=args.threshold,
                reject=args.reject,
            )
        except ImageError as exc:
            failed += 1
            fail(str(exc))
            results.append({"file": str(path), "status": "error", "error": str(exc)})
            continue
        if args.preview is not None:
            result["preview"] = _save_previews(args.preview, path, result["images"], used_names)
        results.append(result)
        if not args.json:
            print(_describe_reading(result, args.threshold))
    if args.json:
        print_json(results)
    return EXIT_USAGE if failed else 0


def _describe_reading(result: dict, threshold: float) -> str:
    """One line: ``digit.png: 7 (probability 0.9812; top 3: 7 0.981, 1 0.010, 9 0.004)``."""
    top3 = ", ".join(f"{t['class_name']} {t['probability']:.3f}" for t in result["top3"])
    if result["status"] == "no digit":
        if result.get("reason") == "not a digit":
            scores = ", ".join(f"{v:.3f}" for v in result["digit_scores"])
            return (
                f"{result['file']}: no digit: not a digit (digit score {scores} < "
                f"{result['detector']:.3f}; --no-reject reads it anyway)"
            )
        return f"{result['file']}: no digit found"
    count = f"{result['digits']} digits, " if result["digits"] > 1 else ""
    if result["status"] == "not sure":
        best = result["top3"][0]["class_name"]
        return (
            f"{result['file']}: not sure ({count}best {best} with probability "
            f"{result['probability']:.4f} < {threshold:g}; top 3: {top3})"
        )
    return (
        f"{result['file']}: {result['class_name']} "
        f"({count}probability {result['probability']:.4f}; top 3: {top3})"
    )


def _save_previews(folder: Path, source: Path, data_urls: list[str], used: set) -> list[str]:
    """Write each 28x28 image the model saw as ``folder/<stem>[-k].png``,
    atomically, never over an existing file (``<stem>-2.png``… until a name is free)."""
    from digitlab.inference import decode_data_url

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--preview: expected a folder. Received: {folder}, a file")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k, url in enumerate(data_urls, start=1):
        stem = source.stem if len(data_urls) == 1 else f"{source.stem}-{k}"
        png = decode_data_url(url)
        for n in range(1, 10_000):
            name = f"{stem}.png" if n == 1 else f"{stem}-{n}.png"
            if name in used:  # two inputs with the same name from different folders
                continue
            try:
                _files.write_new_bytes(folder / name, png)
            except FileExistsError:  # a file digitlab did not make (or an earlier run's)
                continue
            break
        else:  # pragma: no cover - ten thousand previews of one name
            raise ConfigError(f"--preview: expected a folder with a free name for {stem}.png")
        used.add(name)
        written.append(str(folder / name))
    return written


def _predict_index(args) -> int:
    import numpy as np

    from digitlab.runs import load_run

    run = load_run(args.run, quick=True, runtime=args.runtime)
    from digitlab.cli.commands import _run_data

    dataset, which, x, labels = _run_data(args, run)
    if not 0 <= args.index < len(x):
        raise ConfigError(
            f"--index: expected 0..{len(x) - 1} for the {len(x):,} {which} images. "
            f"Received: {args.index}"
        )
    probs = run.predict_proba(x[args.index : args.index + 1])[0].astype(np.float64)
    names = run.class_names
    digit = int(probs.argmax())
    result = {
        "set": which,
        "index": args.index,
        "digit": digit if run.is_digits else None,
        "class_index": digit,
        "class_name": names[digit],
        "true": int(labels[args.index]),
        "probability": float(probs[digit]),
        "probabilities": [float(p) for p in probs],
    }
    if args.json:
        print_json(result)
        return 0
    print(f"image {args.index} of the {which} set (true label {names[result['true']]})")
    print(f"prediction: {names[digit]} with probability {probs[digit]:.4f}")
    width = max(3, *(len(name) for name in names))
    for i, p in enumerate(probs):
        bar = "█" * round(p * 40)
        print(f"  {names[i]:>{width}}  {p:.4f}  {bar}")
    return 0
