"""The part's process: it runs the student's code on the grader's requests and decides nothing.

The grader (grader.py) copies this file and jail.py into the part's folder and starts it as

    python -I -S runner.py SETUP_JSON

(under `unshare` for new mount, PID, IPC and network namespaces where that works). Before
any student code exists in this process it, in order (jail.py): builds a minimal root
filesystem and chroots into it (when asked: namespaces only), sets its resource limits,
drops to the unprivileged uid it was given (as root), makes itself the out-of-memory
killer's first choice and installs a seccomp filter (no sockets, System V IPC, message
queues, keyrings, ptrace); then it puts the part's tree first on sys.path and answers
requests, one at a time, on its standard input:

    {"id": n, "fn": "minivit.ops.linear:linear_forward", "args": [...], "kwargs": {...},
     "keep": true, "release": [handle ids]}

by calling the function and writing one reply on the reply pipe (fd `reply_fd`):

    {"id": n, "ok": true, "value": <encoded>}    or
    {"id": n, "ok": false, "error": {"type", "message", "frames": [[file, line, function]]}}

Values are encoded as JSON (None, booleans, numbers, short strings; {"t": [...]} a tuple,
{"l": [...]} a list, {"d": {...}} a dict with string keys, {"a": i} the i-th array of the
message, {"o": type name} any other object; from the grader also {"g": seed}, a NumPy
random generator) followed by the arrays in .npy format (no
pickle). With "keep", the result stays here under a handle, and every tuple, list, dict
and other object in it carries its path {"r": [handle, i, ...]}, so the grader can pass it
back (a cache, a model) by reference. Nothing in this file judges a value: a reply can at
most be a wrong answer. This file imports only the standard library (and NumPy to
encode arrays), so a broken or hostile student module cannot stop it from starting.
"""
import io
import json
import os
import struct
import sys
import time
import traceback

MAGIC = b"MVR1"
MAX_HEADER = 4 << 20          # bytes of JSON in one message
MAX_ARRAYS = 4096             # arrays in one message
MAX_DEPTH = 12                # nesting of tuples, lists and dicts sent back
MAX_NODES = 50_000
MAX_TEXT = 2000               # characters of a string or an exception message sent back


class ProtocolError(Exception):
    pass


# --- messages: a header line of JSON, then the arrays (.npy) -----------------------------
def encode_message(header, arrays=(), max_bytes=None):
    """The bytes of {header} + arrays. Raises ValueError past max_bytes."""
    import numpy as np
    blobs = []
    for a in arrays:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
        blobs.append(buf.getvalue())
    head = json.dumps(dict(header, sizes=[len(b) for b in blobs])).encode()
    total = len(head) + sum(map(len, blobs))
    if max_bytes is not None and total > max_bytes:
        raise ValueError(f"{total / 1e6:.1f} MB to send, more than the limit of {max_bytes / 1e6:.0f} MB")
    return MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)


def write_message(fd, header, arrays=(), max_bytes=None):
    view = memoryview(encode_message(header, arrays, max_bytes))
    while view:
        view = view[os.write(fd, view):]


def read_exact(read, n):
    """n bytes from read(k) (which returns at most k bytes, b"" at the end)."""
    chunks, left = [], n
    while left:
        b = read(min(left, 1 << 20))
        if not b:
            raise ProtocolError("the other side closed the channel")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_message(read, max_bytes):
    """(header, [arrays]) from read(k); every length checked against max_bytes before
    anything is allocated, arrays parsed with allow_pickle=False, numeric dtypes only."""
    import numpy as np
    if read_exact(read, 4) != MAGIC:
        raise ProtocolError("not a message (bad magic)")
    (n,) = struct.unpack("<I", read_exact(read, 4))
    if n > min(MAX_HEADER, max_bytes):
        raise ProtocolError(f"a message header of {n} bytes")
    header = json.loads(read_exact(read, n))
    sizes = header.get("sizes") if isinstance(header, dict) else None
    if not (isinstance(sizes, list) and len(sizes) <= MAX_ARRAYS
            and all(isinstance(s, int) and s >= 0 for s in sizes) and n + sum(sizes) <= max_bytes):
        raise ProtocolError("a message with bad or too large array sizes")
    arrays = []
    for s in sizes:
        a = np.load(io.BytesIO(read_exact(read, s)), allow_pickle=False)
        if a.dtype.kind not in "biufc" or a.dtype.hasobject:
            raise ProtocolError(f"an array of dtype {a.dtype}")
        arrays.append(a)
    return header, arrays


# --- values ---------------------------------------------------------------------------
def encode(value, arrays, path=None, depth=0, count=None):
    """The JSON form of `value` (arrays appended to `arrays`). path: where `value` sits in
    a kept result, for references; None: not kept."""
    import numpy as np
    count = count if count is not None else [0]
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ValueError(f"more than {MAX_NODES} values in one result")
    ref = {} if path is None else {"r": list(path)}
    if value is None or isinstance(value, (bool, int, float)) and not isinstance(value, np.generic):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
            return {"o": "int (too large)"}
        return value
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biufc" and not value.dtype.hasobject:
        arrays.append(np.asarray(value))
        return {"a": len(arrays) - 1, **({"scalar": True} if isinstance(value, np.generic) else {})}
    if depth < MAX_DEPTH and isinstance(value, (tuple, list)) and type(value) in (tuple, list):
        items = [encode(v, arrays, None if path is None else path + [i], depth + 1, count)
                 for i, v in enumerate(value)]
        return {"t" if isinstance(value, tuple) else "l": items, **ref}
    if depth < MAX_DEPTH and type(value) is dict and all(type(k) is str for k in value):
        return {"d": {k[:200]: encode(v, arrays, None if path is None else path + [k], depth + 1, count)
                      for k, v in value.items()}, **ref}
    return {"o": type(value).__name__[:60], **ref}


def decode(node, arrays):
    """A request's argument: JSON values, arrays, tuples/lists/dicts, references to kept
    results ({"r": [handle, *path]}) and random generators ({"g": seed})."""
    if not isinstance(node, dict):
        return node
    if "a" in node:
        a = arrays[node["a"]]
        return a[()] if node.get("scalar") else a
    if "r" in node:
        hid, *path = node["r"]
        value = HANDLES[hid]
        for step in path:
            value = value[step]
        return value
    if "t" in node:
        return tuple(decode(v, arrays) for v in node["t"])
    if "l" in node:
        return [decode(v, arrays) for v in node["l"]]
    if "d" in node:
        return {k: decode(v, arrays) for k, v in node["d"].items()}
    if "g" in node:
        import numpy as np
        return np.random.default_rng(node["g"])
    raise ProtocolError(f"cannot decode {sorted(node)}")


HANDLES = {}


def call(request, arrays):
    import importlib
    module, _, qualname = request["fn"].partition(":")
    if not module.startswith("minivit."):
        raise ProtocolError(f"not a minivit function: {request['fn']}")
    fn = importlib.import_module(module)
    for name in qualname.split("."):
        fn = getattr(fn, name)
    args = [decode(a, arrays) for a in request.get("args", [])]
    kwargs = {k: decode(v, arrays) for k, v in request.get("kwargs", {}).items()}
    return fn(*args, **kwargs)


def describe_error(exc, tree):
    """The exception's type, a capped message, and the frames of files in the tree (the
    grader keeps those inside the student's own lines)."""
    frames = [[f.filename[len(tree) + 1:], f.lineno, f.name]
              for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(tree + os.sep)]
    if isinstance(exc, SyntaxError) and exc.filename and str(exc.filename).startswith(tree + os.sep):
        frames.append([exc.filename[len(tree) + 1:], exc.lineno or 0, "<module>"])
    try:
        message = str(exc)[:MAX_TEXT]
    except Exception:                                   # noqa: BLE001 - a hostile __str__
        message = "(the message could not be shown)"
    return {"type": type(exc).__name__[:60], "message": message, "frames": frames[-20:]}


def serve(tree, reply_fd, max_reply):
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    read = stdin.read
    while True:
        try:
            request, arrays = read_message(read, 1 << 40)
        except ProtocolError:
            return
        for hid in request.get("release", []):
            HANDLES.pop(hid, None)
        rid, t0 = request["id"], time.perf_counter()
        try:
            result = call(request, arrays)
            out = []
            keep = request.get("keep", False)
            if keep:
                HANDLES[rid] = result
            reply = {"id": rid, "ok": True, "value": encode(result, out, [rid] if keep else None)}
            reply["seconds"] = time.perf_counter() - t0
            write_message(reply_fd, reply, out, max_reply)
        except BaseException as exc:                    # noqa: BLE001 - SystemExit too: report it
            reply = {"id": rid, "ok": False, "error": describe_error(exc, tree),
                     "seconds": time.perf_counter() - t0}
            write_message(reply_fd, reply)


def can_read(path):
    """Whether this process can open `path` (os.access does not see Landlock's rules)."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        return True
    except OSError:
        return False


def can_write(folder):
    """Whether this process can create a file in `folder` (it removes what it made)."""
    probe = os.path.join(folder, f".minivit-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    os.unlink(probe)
    return True


def load_jail():
    """jail.py, beside this file in the part's folder (the script's folder is not on sys.path
    under -I, and the student's tree must not be searched for it)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("minivit_jail", os.path.join(os.path.dirname(__file__), "jail.py"))
    jail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(jail)
    return jail


def main(setup):
    jail = load_jail()
    if setup.get("jail"):
        jail.enter_jail(setup["jail"])
        if os.getpid() == 1:
            child = os.fork()
            if child:
                jail.be_init(child)
    jail.set_limits(setup["limits"])
    jail.first_to_go()
    if setup.get("uid") is not None:
        jail.drop_privileges(setup["uid"])
    else:
        jail.no_new_privileges()
    landlock = jail.restrict_files(**setup["files"])
    denied = jail.deny_syscalls()
    home, tree = setup["home"], setup["tree"]
    os.environ.clear()
    os.environ.update(HOME=home, TMPDIR=home, PATH="/usr/bin:/bin", LANG="C.UTF-8",
                      OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      MINIVIT_NUM_THREADS="1", MINIVIT_DEVICE="cpu", PYTHONHASHSEED="0")
    os.chdir(home)
    sys.path[:] = [tree] + setup["paths"] + [p for p in sys.path if p and p not in setup["paths"]]
    sys.dont_write_bytecode = True
    reply_fd = setup["reply_fd"]
    import numpy                                        # noqa: F401 - before saying "ready"
    write_message(reply_fd, {"id": 0, "ok": True, "ready": True, "uid": os.getuid(), "denied": denied,
                             "landlock": landlock, "readable": [p for p in setup.get("probe", []) if can_read(p)],
                             "writable": [p for p in setup.get("probe_write", []) if can_write(p)]})
    serve(tree, reply_fd, setup["max_reply"])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
