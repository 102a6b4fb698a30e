"""What every command shares: the one-line error, JSON output, exit codes."""

from __future__ import annotations

import json
import sys

EXIT_USAGE = 2


def fail(message: str) -> int:
    """Print ``digitlab: error: MESSAGE`` (one line) on stderr; return exit status 2."""
    print(f"digitlab: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def progress_log(args):
    """Where progress lines go: stdout, stderr under --json, nowhere under --quiet."""
    import io

    if args.quiet:
        return io.StringIO()  # a few lines per model or trial, dropped at exit
    return sys.stderr if args.json else sys.stdout
