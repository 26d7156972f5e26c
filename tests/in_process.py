"""A command run in the test's own process and answered as `subprocess.run(...,
capture_output=True, text=True)` answers: for tests of what a command prints and
returns that need no process of their own (a fresh interpreter costs seconds here;
tests of imports at start-up, signals or a terminal still start one)."""
from __future__ import annotations

import io
import subprocess
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout


def run_main(main: Callable[[list[str]], int], *args: object) -> subprocess.CompletedProcess:
    """`main(argv)` of `python -m engine` or `python -m store` with stdout and stderr
    captured; argparse's exit (a usage error, --help) gives its exit status."""
    argv = [str(arg) for arg in args]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
