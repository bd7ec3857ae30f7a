"""The grader's end of a part's process: `run(...)` for the checks (see checks.py).

Remote sends each call to the part's process (runner.py) and waits for the reply under
the part's deadline; the reply is read with hard limits (sizes declared before anything
is allocated, .npy without pickle, numeric dtypes only) and decoded into plain values:
arrays, numbers, short strings, tuples, lists, dicts, and for anything else an Opaque
stand-in. A tuple, list, dict or object that came back is passed back by reference, so a
cache or a model stays in the part's process as the student's code built it.

Reference calls the grader's own package (the solution) in this process, under one lock:
the expected values of the "values" checks, the functions a gradient check differentiates
numerically, and the wrong variants of diagnoses.py (which patch the package while they
run).
"""
import itertools
import os
import select
import threading
import time

import numpy as np

from .checks import Local, Rng
from .runner import ProtocolError, encode_message, read_message

MAX_REPLY = 16 << 20        # bytes in one reply (the largest check needs < 1 MB)
MAX_TEXT, MAX_KEY = 200, 100    # characters of a string, of a dict's key, that came back
MAX_MESSAGE = 2000              # characters of an exception's message (the runner's cap)
REFERENCE_LOCK = threading.RLock()


class TimeLimit(Exception):
    """The part's time is up (the process is stopped by the caller)."""


class PartDied(Exception):
    """The part's process ended, or broke the protocol; the message says how."""


class StudentError(Exception):
    """The student's code raised: its type, capped message and frames (in the tree)."""

    def __init__(self, error, function):
        # what the part's process wrote, taken as data of the expected types only (a reply
        # can be forged): strings, and frames of (file, line, function)
        kind, message, frames = error.get("type"), error.get("message"), error.get("frames")
        self.type = kind[:60] if isinstance(kind, str) else "Exception"
        super().__init__(self.type)
        self.message = message[:MAX_MESSAGE] if isinstance(message, str) else ""
        self.frames = [f for f in (frames if isinstance(frames, list) else [])
                       if isinstance(f, list) and len(f) == 3 and isinstance(f[0], str)
                       and type(f[1]) is int and isinstance(f[2], str)][-20:]
        self.function = function


class Opaque:
    """An object the part's code returned that is not an array, a number or a container."""

    def __init__(self, type_name, ref):
        self.type_name, self.ref = type_name, ref

    def __repr__(self):
        return f"<{self.type_name}>"


def _referenced(base):
    class Returned(base):
        """A tuple/list/dict as returned by the part's code; passed back by reference."""

        def __del__(self):
            release = getattr(self, "_release", None)
            if release is not None:
                release(self.ref[0])
    Returned.__name__ = base.__name__
    return Returned


RTuple, RList, RDict = _referenced(tuple), _referenced(list), _referenced(dict)


class Reference(Local):
    """Calls on the grader's own package: the solution."""
    label = "the reference forward pass"

    def __call__(self, name, *args, **kwargs):
        with REFERENCE_LOCK:
            return super().__call__(name, *args, **kwargs)


class Remote:
    """run(name, *args, **kwargs) in the part's process; the deadline is the part's."""
    label = Reference.label

    def __init__(self, proc, deadline):
        self.proc, self.deadline = proc, deadline
        self.ids = itertools.count(1)
        self.live, self.released = {}, []
        self.reference = Reference()

    def local(self, name):
        return self.reference.local(name)

    def __call__(self, name, *args, **kwargs):
        rid = next(self.ids)
        arrays = []
        request = {"id": rid, "fn": name, "keep": True, "release": self.released,
                   "args": [self._encode(a, arrays) for a in args],
                   "kwargs": {k: self._encode(v, arrays) for k, v in kwargs.items()}}
        self.released = []
        self._send(request, arrays)
        reply, arrays = self._receive()
        if reply.get("id") != rid or not isinstance(reply.get("ok"), bool):
            raise PartDied("the part's process answered out of turn (something wrote on the grader's channel)")
        if not reply["ok"]:
            raise StudentError(reply.get("error") if isinstance(reply.get("error"), dict) else {}, name)
        try:
            value = self._decode(reply.get("value"), arrays, rid)
        except RecursionError:
            raise PartDied("the part's process sent a reply nested too deeply") from None
        if not self.live.get(rid):                  # nothing refers to it: the part may drop it
            self.live.pop(rid, None)
            self.released.append(rid)
        return value

    # --- values ---------------------------------------------------------------------------
    def _encode(self, v, arrays):
        if isinstance(v, (RTuple, RList, RDict, Opaque)) and v.ref is not None:
            return {"r": list(v.ref)}
        if isinstance(v, (np.ndarray, np.generic)):
            arrays.append(np.asarray(v))
            return {"a": len(arrays) - 1, **({"scalar": True} if isinstance(v, np.generic) else {})}
        if isinstance(v, Rng):
            return {"g": v.seed}
        if isinstance(v, tuple):
            return {"t": [self._encode(x, arrays) for x in v]}
        if isinstance(v, list):
            return {"l": [self._encode(x, arrays) for x in v]}
        if isinstance(v, dict):
            return {"d": {str(k): self._encode(x, arrays) for k, x in v.items()}}
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        raise TypeError(f"cannot send a {type(v).__name__} to the part's process")

    def _decode(self, node, arrays, rid):
        if isinstance(node, str):
            return node[:MAX_TEXT]          # the runner caps them too, but a reply may be forged
        if not isinstance(node, dict):
            return node if node is None or isinstance(node, (bool, int, float)) else None
        ref = node.get("r")
        ref = tuple(ref) if isinstance(ref, list) and ref and ref[0] == rid else None
        if "a" in node:
            if not (isinstance(node["a"], int) and 0 <= node["a"] < len(arrays)):
                raise PartDied("the part's process sent a malformed reply")
            a = arrays[node["a"]]
            return a[()] if node.get("scalar") and a.ndim == 0 else a
        for key, kind in (("t", RTuple), ("l", RList)):
            if isinstance(node.get(key), list):
                out = kind(self._decode(x, arrays, rid) for x in node[key])
                return self._track(out, ref)
        if isinstance(node.get("d"), dict):
            return self._track(RDict({str(k)[:MAX_KEY]: self._decode(x, arrays, rid) for k, x in node["d"].items()}),
                               ref)
        return self._track(Opaque(str(node.get("o", "object"))[:60], ref), ref)

    def _track(self, obj, ref):
        if isinstance(obj, Opaque):
            if ref is not None:
                self.live[ref[0]] = self.live.get(ref[0], 0) + 1
            return obj
        obj.ref, obj._release = ref, None
        if ref is not None:
            self.live[ref[0]] = self.live.get(ref[0], 0) + 1
            obj._release = self._release
        return obj

    def _release(self, rid):
        left = self.live.get(rid, 1) - 1
        if left <= 0:
            self.live.pop(rid, None)
            self.released.append(rid)
        else:
            self.live[rid] = left

    # --- the channel, under the deadline ------------------------------------------------------
    def _left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeLimit()
        return left

    def _send(self, header, arrays):
        fd = self.proc.request_fd
        view = memoryview(encode_message(header, arrays))
        while view:
            _, ready, _ = select.select([], [fd], [], self._left())
            if not ready:
                raise TimeLimit()
            try:
                view = view[os.write(fd, view[:1 << 16]):]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                raise PartDied(self.proc.why_stopped()) from None

    def _receive(self):
        fd = self.proc.reply_fd

        def read(n):
            ready, _, _ = select.select([fd], [], [], self._left())
            if not ready:
                raise TimeLimit()
            return os.read(fd, n)
        try:
            return read_message(read, MAX_REPLY)
        except ProtocolError as e:
            if "closed" in str(e):
                raise PartDied(self.proc.why_stopped()) from None
            raise PartDied(f"the part's process sent something that is not a reply ({e})") from None
        except (ValueError, OSError, RecursionError, MemoryError) as e:
            raise PartDied(f"the part's process sent something that is not a reply ({type(e).__name__})") from None


def start_ready(proc, deadline):
    """Wait for the runner's "ready" message; returns it (what the part's user could read)."""
    remote = Remote(proc, deadline)
    header, _ = remote._receive()
    if not header.get("ready"):
        raise PartDied("the part's process did not start")
    return header
