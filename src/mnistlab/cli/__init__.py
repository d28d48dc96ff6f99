"""The `mnistlab` command: parse flags, build a Config, call one library function, print.

    mnistlab --help

Library errors (MnistlabError) become one line on stderr and exit status 2; a reader that goes
away (`mnistlab data info | head -1`) ends the command quietly, as it ends Unix tools. Keras and
TensorFlow are imported only by the commands that need them, so `mnistlab data info` starts fast
and `mnistlab predict one.jpg` on the shipped reader never loads them.

    flags.py      the parser: every command's flags, and the Config they build
    helptext.py   what each config field's flag means, for --help
    commands.py   one cmd_<name> per command: call the library, print the result
"""

from __future__ import annotations

import os
import signal
import sys

from mnistlab import backends
from mnistlab.cli.commands import COMMANDS, KERAS_COMMANDS
from mnistlab.cli.flags import backend_option, build_parser, config_from_args
from mnistlab.errors import MnistlabError

__all__ = ["build_parser", "config_from_args", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        # --backend first, anywhere on the line: the parser itself imports Keras for the presets.
        chosen, argv = backend_option(argv)
        backends.select(chosen)
    except MnistlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args = build_parser(argv).parse_args(argv)
    try:
        if args.command in KERAS_COMMANDS:  # predict, read, serve: only for a run without model.onnx
            backends.import_keras()
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
        return status
    except MnistlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # As Python's docs advise (signal module, "Note on SIGPIPE"): stdout goes to devnull, so
        # the flush at exit cannot fail again; the status is the shell's for a tool SIGPIPE ended.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
