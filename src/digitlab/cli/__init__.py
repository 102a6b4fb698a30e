"""The ``digitlab`` command line.

Each subcommand parses its flags, builds the library's config objects at the
edge and calls the public API.  Anything a user can get wrong ends as one line
on stderr and exit status 2; a library error that names a config field or
argument (``learning_rate: expected …``) is shown with the flag's name
(``--learning-rate: expected …``).  Heavy libraries load only in the commands
that need them, so ``digitlab --help`` and ``digitlab data info`` stay quick.

* :mod:`~digitlab.cli.parser` - the flags of every command.
* :mod:`~digitlab.cli.commands` - train, evaluate, predict, serve, data.
* :mod:`~digitlab.cli.experiments` - compare, sweep.
* :mod:`~digitlab.cli.exporting` - export (ONNX, the web page).
"""

from __future__ import annotations

import os
import re
import sys

from digitlab.cli.output import EXIT_USAGE, fail
from digitlab.cli.parser import build_parser
from digitlab.errors import DigitlabError

__all__ = ["EXIT_USAGE", "build_parser", "main"]

_FIELD = re.compile(r"^([a-z_][a-z0-9_]*): ")


def main(argv: list[str] | None = None) -> int:
    from digitlab import _backend

    _backend.lean_import = True  # see there: Keras without its unused extras
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    from digitlab import _interrupts

    _interrupts.install()
    try:
        return args.handler(args) or 0
    except _interrupts.Terminated:
        print("digitlab: terminated", file=sys.stderr)
        return 143
    except DigitlabError as exc:
        return fail(as_flags(str(exc), getattr(args, "flags", {})))
    except BrokenPipeError:
        # `digitlab ... | head`: the reader left; stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # permissions, full disk, a path that is a file…
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130


def as_flags(message: str, flags: dict[str, str]) -> str:
    """``"learning_rate: expected…"`` → ``"--learning-rate: expected…"`` when
    the command has a flag for that field (``flags``: field → flag)."""
    match = _FIELD.match(message)
    if match and match.group(1) in flags:
        return flags[match.group(1)] + message[match.end(1) :]
    return message
