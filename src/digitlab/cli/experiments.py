"""The experiment commands: compare and sweep."""

from __future__ import annotations

from digitlab.cli.output import fail, print_json, progress_log


def cmd_compare(args) -> int:
    from digitlab import models as registry
    from digitlab.experiments import compare

    models = args.models or [kind.name for kind in registry.kinds() if not kind.slow]
    settings = {"split": args.split, "seed": args.seed}
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    log = progress_log(args)
    result = compare(
        models,
        settings=settings,
        data_dir=args.data_dir,
        out=args.out,
        plots_enabled=not args.no_plots,
        log=log,
    )
    if args.json:
        print_json({"out": str(result.out), "rows": result.rows})
        return 0
    print()
    print(result.table())
    print(f"\nwrote {result.out}/compare.csv, compare.json and compare.png")
    return 0


def cmd_sweep(args) -> int:
    from digitlab import experiments
    from digitlab.config import TrainConfig
    from digitlab.runs import default_run_dir

    given = {"split": args.split, "epochs": args.epochs}
    base = TrainConfig.for_model(
        args.model, **{name: value for name, value in given.items() if value is not None}
    )
    grid = experiments.build_grid(
        base,
        hidden=args.hidden,
        layers=args.layers,
        seeds=args.seeds,
        assignments=[experiments.parse_assignment(text) for text in args.assignments],
    )
    configs = experiments.grid_configs(base, grid)
    out = args.out if args.out is not None else default_run_dir("sweep")
    result = experiments.run_sweep(
        configs,
        out=out,
        data_dir=args.data_dir,
        workers=args.workers,
        ray_address=args.ray_address,
        keep_models=args.keep_models,
        log=progress_log(args),
    )
    if args.json:
        print_json(
            {
                "out": str(result.out),
                "trials": len(result.trials),
                "skipped": result.skipped,
                "failed": [{"config": c.to_dict(), "error": e} for c, e in result.failed],
                "varied": result.varied,
                "summary": result.summary,
            }
        )
    else:
        print()
        print(experiments.format_sweep_table(result.summary, result.varied))
        print(f"\nresults in {result.out} (rerun with --out {result.out} to resume)")
    if result.failed:
        return fail(
            f"{len(result.failed)} of {len(configs)} trials failed (see above); rerun the same "
            f"command with --out {result.out} to retry them"
        )
    return 0
