"""``digitlab export``: a run as ONNX, or as a web page that reads digits in
the browser (needs ``digitlab[export]``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from digitlab.cli.output import fail, print_json


def add_parser(subcommands) -> argparse.ArgumentParser:
    """Add ``digitlab export`` to ``subcommands`` (argparse's sub-parsers); return it."""
    p = subcommands.add_parser(
        "export",
        help="export a run: an ONNX file (with its JSON and model card) or a static web page",
        description="--format onnx writes FILE (default RUN/model.onnx: input 'images' "
        "float32 (batch, 28, 28) = pixels / 255, light ink on dark; output 'probabilities', "
        "calibrated), FILE.json (class names, preprocessing, temperature, reading rules) and "
        "FILE.md (a model card); then --runtime onnx of predict and serve uses RUN/model.onnx. "
        "--format web DIR writes a folder any static file server can serve: a drawing page "
        "that reads digits in the browser with onnxruntime-web, nothing loaded from elsewhere. "
        "Files digitlab did not write are never replaced.",
    )
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument(
        "folder", nargs="?", type=Path, metavar="DIR", help="with --format web: a new, empty folder"
    )
    p.add_argument("--format", required=True, choices=("onnx", "web"), help="what to write")
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="with --format onnx: the .onnx file to write"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(handler=cmd_export)
    p.__class__ = type("IntermixedParser", (type(p),), {"parse_known_args": _intermixed})
    return p


def _intermixed(self, args=None, namespace=None):
    """Positionals on both sides of options (``RUN --format web DIR``), which
    argparse's plain parsing refuses: its intermixed parsing, for this command."""
    parent = super(type(self), self)
    if getattr(self, "_mixing", False):
        return parent.parse_known_args(args, namespace)
    self._mixing = True
    try:
        return self.parse_known_intermixed_args(args, namespace)
    finally:
        self._mixing = False


def cmd_export(args) -> int:
    from digitlab.runs import load_run

    if args.format == "web":
        target = args.folder or args.out
        if target is None:
            return fail("export: --format web needs a folder: digitlab export RUN --format web DIR")
        from digitlab.export import export_web

        summary = export_web(load_run(args.run), target)
    else:
        if args.folder is not None:
            return fail(
                f"export: --format onnx writes one file: use --out FILE. Received: {args.folder}"
            )
        from digitlab.export import export_onnx

        summary = export_onnx(load_run(args.run), args.out)
    if args.json:
        print_json(summary)
        return 0
    print(f"exported {args.run} as {args.format} in {summary['export_seconds']:.1f} s")
    for path, size in summary["files"].items():
        print(f"  {path}  {size:,} bytes")
    if "max_abs_diff" in summary:
        difference = summary["max_abs_diff"]
        print(f"  checked: onnxruntime and digitlab differ by at most {difference:.1e}")
    return 0
