"""How many CPU threads minivit uses, and which threads already own a core.

An execution choice, not math: data parallelism (minivit/data_parallel.py) runs one slice
of the batch per thread, and the fast kernels (minivit/fast/parallel.py) split a large
array over threads. A thread that already owns a core (a data-parallel worker) says so
with serial_in_this_thread(), and the fast kernels then run its work in that thread.

Threads: MINIVIT_NUM_THREADS, else the number of CPUs this process may use.
"""
import os
import threading

_local = threading.local()


def num_threads():
    env = os.environ.get("MINIVIT_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MINIVIT_NUM_THREADS must be a whole number, got {env!r}") from None
        return max(1, n)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:        # not on Linux
        return max(1, os.cpu_count() or 1)


def serial_in_this_thread():
    """From now on, work split over threads that the calling thread asks for runs in the
    calling thread itself (still in chunks): for threads that each already own a core."""
    _local.serial = True


def runs_serially():
    """True in a thread that called serial_in_this_thread()."""
    return getattr(_local, "serial", False)
