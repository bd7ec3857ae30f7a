"""What the command-line tools share: warnings as one plain line, and the exceptions that
mean "bad input" (a message and exit code 2) rather than a bug (a traceback)."""
import contextlib
import pickle
import sys
import warnings

# OSError: a missing file, a read-only data dir; UnpicklingError: a refused batch file
USER_ERRORS = (ValueError, RuntimeError, OSError, pickle.UnpicklingError)


@contextlib.contextmanager
def cli_warnings():
    """Warnings as one plain line on stderr ("warning: ..."), not Python's source echo."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
        yield


def error(message):
    """Print one line 'error: ...' on stderr; returns the exit code for bad input."""
    print(f"error: {message}", file=sys.stderr)
    return 2
