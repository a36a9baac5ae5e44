"""How a command stops: its exit code and its one-line error, for every verb of the
command line (``brainmri.cli``) and the series runner, which reports for ``brainmri run``.
Standard output is guarded while a command runs, so that a closed pipe or a full disk
behind ``> file`` is one line, not a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import sys


def error(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr gone too (``|& head -1``)
        print(f"error: {message}", file=sys.stderr, flush=True)


#: Exit codes of every verb (the module docstring and README's "Exit codes" say when).
EXIT_OK = 0
EXIT_FAILED = 1  # the work failed or found nothing to work on
EXIT_USAGE = 2  # refused before any work: the arguments, or what they name, are unusable
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, the shell convention)
#: ``brainmri predict``'s names for them.
EXIT_NOTHING_READ = EXIT_FAILED  # every input gave an error row; the table is still written
EXIT_UNUSABLE = EXIT_USAGE  # bad arguments, model, sidecar or output path: nothing was
#                             classified (or, the --csv file could not be written at the end)


class StdoutError(OSError):
    """Standard output could not be written: a pipe whose reader left (``| head -1``),
    a closed descriptor (``>&-``), a full disk behind ``> file``. Told apart from the
    write errors of the files a command writes, which each verb reports itself."""


class GuardedStream:
    """``sys.stdout`` (or its ``buffer``) while a command runs: a write error becomes a
    :class:`StdoutError`, remembered in ``failed`` even where a caller swallows it
    (argparse's ``--help`` does). ``stream`` None: the descriptor was closed at start."""

    def __init__(self, stream, owner: GuardedStream | None = None):
        self.stream = stream
        self.owner = owner or self
        self.failed: StdoutError | None = None

    def _fail(self, exc: OSError | None) -> StdoutError:
        error = StdoutError(exc.errno if exc else errno.EBADF,
                            (exc.strerror or str(exc)) if exc else "it is closed")
        self.owner.failed = self.owner.failed or error
        return error

    def write(self, data):
        if self.stream is None:
            raise self._fail(None)
        try:
            return self.stream.write(data)
        except OSError as exc:
            raise self._fail(exc) from exc

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self.stream is None:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            raise self._fail(exc) from exc

    def isatty(self) -> bool:
        try:
            return self.stream is not None and self.stream.isatty()
        except (OSError, ValueError):
            return False

    @property
    def buffer(self):
        return GuardedStream(getattr(self.stream, "buffer", None), self.owner)

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", None) or "utf-8"

    def __getattr__(self, name):
        if self.stream is None:
            raise AttributeError(name)
        return getattr(self.stream, name)


def guard_stdout() -> GuardedStream:
    """Install the guard. When the process started with its standard output closed
    (``>&-``), /dev/null takes descriptor 1 first, so that no file this command opens
    gets it (a library or child writing to descriptor 1 would write into that file)."""
    stream = sys.stdout
    if stream is None:
        try:
            os.fstat(1)
        except OSError:
            fd = os.open(os.devnull, os.O_WRONLY)
            if fd != 1:
                os.dup2(fd, 1)
                os.close(fd)
    guard = GuardedStream(stream)
    sys.stdout = guard
    return guard


def release_stdout(guard: GuardedStream) -> None:
    if sys.stdout is guard:
        sys.stdout = guard.stream
    if guard.failed is not None and guard.stream is not None \
            and guard.stream is sys.__stdout__:
        # What stayed in its buffer cannot be written either: point descriptor 1 at
        # /dev/null, or the interpreter's last flush prints "Exception ignored ...".
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, guard.stream.fileno())
            os.close(fd)
        except (OSError, ValueError):
            pass
