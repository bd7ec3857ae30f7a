"""More cheating submissions, each graded end to end (a red team's round after #30): what a
part leaves behind on the machine for a later grading, the network, and a part that
starves the grader of memory. Each asserts a zero score for the cheating part, unchanged
scores for the honest ones and no secret line in results.json.

The submission graded: `linear` written (full points), `loss` left as the copy's TODO
(0 points), `softmax` the cheat.
"""
import ctypes
import json
import os
import platform
import secrets
import shutil
import socket
import tempfile
import stat
import subprocess
import sys
import threading
import zipfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from assignment_util import PACKAGE, edit, env, fresh, grade_cli, outputs, scores, secrets_in, set_region
from minivit.assignment.make import fill
from minivit.assignment.parts import PARTS as PARTS_POINTS

PARTS = ["linear", "softmax", "loss"]
HONEST = {"linear": PARTS_POINTS["linear"][0], "loss": 0.0}
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="isolation by uid and namespaces needs root")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    copy = fresh(tmp_path_factory.mktemp("base"), parts=PARTS + ["attention"])
    fill(copy, ["linear"])
    return copy


def assert_only_the_cheat_lost(result, cheat="softmax"):
    s = scores(result)
    assert s[cheat][0] == 0.0, (cheat, s[cheat], outputs(result, cheat)[:3000])
    for part, points in HONEST.items():
        assert s[part][0] == pytest.approx(points), (part, s[part], outputs(result, part)[:3000])
    leaked = secrets_in(json.dumps(result, indent=1).replace("\\n", "\n"), PARTS)
    assert not leaked, leaked[:5]


# --- 1. what a part leaves behind, for a later grading ------------------------------------
# An `attention` submission runs on the reference softmax, so its process can read that
# code (by design). It leaves it wherever something could outlive the part: System V shared
# memory, a key in the session keyring (the grader's, when it runs in a login session), and
# files in the machine's world-writable folders; it also offers it on a local socket. A later
# grading's `softmax` takes it from there. (Names are random per run: other test runs may
# share this machine.)
SYSCALLS = {"x86_64": {"add_key": 248, "keyctl": 250}, "aarch64": {"add_key": 217, "keyctl": 219}}

LEAVE = r'''
import ctypes, os, platform, socket
here = os.path.abspath(__file__)
while not os.path.isfile(os.path.join(here, "minivit", "ops", "softmax.py")):
    here = os.path.dirname(here)
src = open(os.path.join(here, "minivit", "ops", "softmax.py"), "rb").read()
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
shmid = libc.shmget(SHM_KEY, 1 << 16, 0o1000 | 0o666)
if shmid >= 0:
    addr = libc.shmat(shmid, None, 0)
    if addr not in (None, ctypes.c_void_p(-1).value):
        ctypes.memmove(addr, src + b"\0", len(src) + 1)
nr = SYSCALLS.get(platform.machine())
if nr:
    serial = libc.syscall(nr["add_key"], b"user", b"TOKEN", src, len(src), -3)   # the session keyring
    if serial > 0:
        libc.syscall(nr["keyctl"], 5, serial, 0x3f3f3f3f)                         # readable by all
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        with open(f"{d}/TOKEN.py", "wb") as f:
            f.write(src)
        os.chmod(f"{d}/TOKEN.py", 0o666)
    except OSError:
        pass
for family, address in ((socket.AF_INET, ("127.0.0.1", PORT)), (socket.AF_UNIX, "\0TOKEN")):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(address)
            s.sendall(src)
    except OSError:
        pass
raise NotImplementedError
'''

TAKE = r'''
import ctypes, os, platform
def _take(name):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    found = []
    shmid = libc.shmget(SHM_KEY, 0, 0)
    if shmid >= 0:
        addr = libc.shmat(shmid, None, 0o10000)
        if addr not in (None, ctypes.c_void_p(-1).value):
            found.append(ctypes.string_at(addr))
    nr = SYSCALLS.get(platform.machine())
    try:
        for line in open("/proc/keys"):
            if "TOKEN" in line and nr:
                buf = ctypes.create_string_buffer(1 << 16)
                n = libc.syscall(nr["keyctl"], 11, int(line.split()[0], 16), buf, 1 << 16)
                if n > 0:
                    found.append(buf.raw[:n])
    except OSError:
        pass
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            found.append(open(f"{d}/TOKEN.py", "rb").read())
        except OSError:
            pass
    for src in found:
        ns = {"__name__": "minivit.ops._taken", "__package__": "minivit.ops"}
        try:
            exec(src.decode(), ns)
            return ns[name]
        except Exception:
            continue
    raise RuntimeError("nothing was left behind")
'''


# A teacher logged in on a VM grades one submission after another: one session keyring.
ONE_SESSION = r'''
import ctypes, json, subprocess, sys
gradings, isolation, keyctl = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctypes.CDLL(None).syscall(keyctl, 1, None)              # KEYCTL_JOIN_SESSION_KEYRING: a new one
for submission, out, parts in gradings:
    subprocess.run([sys.executable, "-m", "minivit.assignment", "grade", submission, "--out", out, "--parts", *parts,
                    "--isolation", isolation], check=True)
'''


class Listener:
    """A TCP socket on 127.0.0.1 and an abstract Unix socket that record who connects."""

    def __init__(self, token):
        self.heard = []
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind("\0" + token)
        self.port = self.tcp.getsockname()[1]
        for s in (self.tcp, self.unix):
            s.listen()
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s):
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            self.heard.append(conn.recv(100))
            conn.close()

    def close(self):
        for s in (self.tcp, self.unix):
            s.close()


def remove_leftovers(token, shm_key):
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        Path(f"{d}/{token}.py").unlink(missing_ok=True)
    libc = ctypes.CDLL(None)
    shmid = libc.shmget(shm_key, 0, 0)
    if shmid >= 0:
        libc.shmctl(shmid, 0, None)                              # IPC_RMID


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["auto", "user"])
def test_nothing_a_part_leaves_reaches_a_later_grading(base, tmp_path, autograder, isolation):
    token, shm_key = f"minivit-left-{secrets.token_hex(4)}", 0x4D560000 + secrets.randbelow(1 << 16)
    listener = Listener(token)

    def fill_in(code):
        return (code.replace("SHM_KEY", hex(shm_key)).replace("TOKEN", token).replace("PORT", str(listener.port))
                .replace("SYSCALLS", repr(SYSCALLS)))
    leaver, taker = tmp_path / "leaver", tmp_path / "taker"
    shutil.copytree(base, leaver)
    shutil.copytree(base, taker)
    set_region(leaver, "ops/sdpa.py", "attention", fill_in(LEAVE), index=0)
    set_region(taker, "ops/softmax.py", "softmax", fill_in(TAKE) + 'return _take("softmax_forward")(x, axis)', index=0)
    set_region(taker, "ops/softmax.py", "softmax", fill_in(TAKE) + 'return _take("softmax_backward")(dy, cache)',
               index=1)
    # the part's Python must be one every user can run: the autograder's (its setup.sh made it so)
    python = autograder.root / "venv" / "bin" / "python"
    gradings = [[str(leaver), str(tmp_path / "left.json"), ["attention"]],
                [str(taker), str(tmp_path / "taken.json"), PARTS]]
    try:
        r = subprocess.run([str(python), "-c", ONE_SESSION, json.dumps(gradings), isolation,
                            str(SYSCALLS.get(platform.machine(), {}).get("keyctl", 250))],
                           capture_output=True, text=True, timeout=600, env=env(), cwd=PACKAGE.parent)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert scores(json.loads((tmp_path / "left.json").read_text()))["attention"][0] == 0
        result = json.loads((tmp_path / "taken.json").read_text())
        assert_only_the_cheat_lost(result)
        assert "nothing was left behind" in outputs(result, "softmax"), outputs(result, "softmax")[:2000]
        assert not listener.heard, "a part's process reached a socket of the machine"
    finally:
        listener.close()
        remove_leftovers(token, shm_key)


# --- 2. a part that starves the grader of memory -------------------------------------------
# Each process of a part has its own address-space limit, but the machine's memory is shared
# (Gradescope: 768 MB for everything). The part spawns many small processes that grow
# slowly, and makes its own process small (exec): when memory runs out, the kernel kills the
# largest process, the grader, and results.json is never written.
HOG = r'''
import os, subprocess, sys
grow = ("import time\nb = []\nfor i in range(24):\n    b.append(bytearray(1 << 20))\n"
        "    for j in range(0, 1 << 20, 4096): b[-1][j] = 1\n    time.sleep(0.1)\ntime.sleep(60)\n")
for _ in range(60):
    try:
        subprocess.Popen([sys.executable, "-S", "-c", grow], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    except OSError:
        break
os.execv("/bin/sleep", ["sleep", "60"])
'''


@contextmanager
def memory_cgroup(mb):
    """A memory cgroup of `mb` MB without swap (v1 or v2); yields its cgroup.procs."""
    name = f"minivit-test-{secrets.token_hex(4)}"
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    if (v1 / "memory.limit_in_bytes").is_file():
        d, limits = v1 / name, {"memory.limit_in_bytes": mb << 20, "memory.memsw.limit_in_bytes": mb << 20}
    elif "memory" in ((v2 / "cgroup.subtree_control").read_text() if (v2 / "cgroup.subtree_control").is_file() else ""):
        d, limits = v2 / name, {"memory.max": mb << 20, "memory.swap.max": 0}
    else:
        pytest.skip("needs a memory cgroup (cgroup v1 or v2 with the memory controller)")
    try:
        d.mkdir()
        for key, value in limits.items():
            if (d / key).exists():
                (d / key).write_text(str(value))
    except OSError as e:
        shutil.rmtree(d, ignore_errors=True) if d.exists() and not any(d.glob("cgroup.procs")) else None
        pytest.skip(f"cannot make a memory cgroup here ({e})")
    try:
        yield d / "cgroup.procs"
    finally:
        for _ in range(100):                        # only processes of this test are in it
            pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        d.rmdir()


@needs_root
@pytest.mark.slow
def test_a_part_that_exhausts_the_memory_costs_only_its_own_points(base, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    set_region(copy, "ops/softmax.py", "softmax", HOG, index=0)
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "minivit.assignment", "grade", str(copy), "--out", str(out), "--parts", *PARTS,
           "--time-limit", "5", "--memory-mb", "512"]
    with memory_cgroup(768) as procs:                       # Gradescope's memory
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env(), cwd=PACKAGE.parent,
                           preexec_fn=lambda: procs.write_text(str(os.getpid())))
    assert out.is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert_only_the_cheat_lost(json.loads(out.read_text()))


# --- 3. points without the work ---------------------------------------------------------
# Every function returns what needs no work: arrays of the right shape and dtype holding
# zeros, a uniform distribution, a constant (ln K for the loss), or its input unchanged.
NOWORK = {      # (file, part, which region of the part in the file): the body (`np` is NumPy)
    ("ops/linear.py", "linear", 0): (
        "return np.zeros(x.shape[:-1] + (w.shape[0],), x.dtype), (x, w, b)"),
    ("ops/linear.py", "linear", 1): (
        "x, w, b = cache\n"
        "return np.zeros_like(x), np.zeros_like(w), None if b is None else np.zeros_like(b)"),
    ("ops/layernorm.py", "layernorm", 0): (
        "return np.zeros_like(x), (x, gamma)"),
    ("ops/layernorm.py", "layernorm", 1): (
        "x, g = cache\n"
        "return np.zeros_like(x), np.zeros_like(g), np.zeros_like(g)"),
    ("ops/gelu.py", "gelu", 0): (
        "return x.copy(), x"),
    ("ops/gelu.py", "gelu", 1): (
        "return dy.copy()"),
    ("ops/softmax.py", "softmax", 0): (
        "y = np.ones_like(x) / x.shape[axis]\n"
        "return y, (y, axis)"),
    ("ops/softmax.py", "softmax", 1): (
        "return np.zeros_like(dy)"),
    ("ops/sdpa.py", "attention", 0): (
        "a = np.ones(q.shape[:-1] + (k.shape[-2],), q.dtype) / k.shape[-2]\n"
        "return np.zeros_like(q), a, (q, k, v)"),
    ("ops/sdpa.py", "attention", 1): (
        "q, k, v = cache\n"
        "return np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)"),
    ("ops/attention.py", "attention", 0): (
        "B, N, D = x.shape\n"
        "a = np.ones((B, num_heads, N, N), x.dtype) / N\n"
        "cache = (x, p)\n"
        "return (np.zeros_like(x), a, cache) if return_attn else (np.zeros_like(x), cache)"),
    ("ops/attention.py", "attention", 1): (
        "x, p = cache\n"
        "return np.zeros_like(x), {n: np.zeros_like(v) for n, v in p.items()}"),
    ("ops/mlp.py", "block", 0): (
        "return x * 0, (x, p)"),
    ("ops/mlp.py", "block", 1): (
        "x, p = cache\n"
        "return np.zeros_like(x), {n: np.zeros_like(v) for n, v in p.items()}"),
    ("ops/block.py", "block", 0): (
        "B, N, D = x.shape\n"
        "a = np.ones((B, num_heads, N, N), x.dtype) / N\n"
        "return (x.copy(), a, (x, p)) if return_attn else (x.copy(), (x, p))"),
    ("ops/block.py", "block", 1): (
        "x, p = cache\n"
        "return dy.copy(), {n: np.zeros_like(v) for n, v in p.items()}"),
    ("ops/patch.py", "patch_embed", 0): (
        "B, C, H, W = x.shape\n"
        "P = patch_size\n"
        "return np.zeros((B, (H // P) * (W // P), C * P * P), x.dtype), (B, C, H, W, P)"),
    ("ops/patch.py", "patch_embed", 1): (
        "return np.zeros((patches.shape[0], C, H, W), patches.dtype)"),
    ("ops/patch_embed.py", "patch_embed", 0): (
        "B, C, H, W = x.shape\n"
        "N = (H // patch_size) * (W // patch_size)\n"
        "return np.zeros((B, N, w.shape[0]), x.dtype), (x, w, b)"),
    ("ops/patch_embed.py", "patch_embed", 1): (
        "x, w, b = cache\n"
        "return np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)"),
    ("ops/embed.py", "cls_pool", 0): (
        "B, N, D = tokens.shape\n"
        "return np.zeros((B, N + 1, D), tokens.dtype), (tokens, cls_token, pos_embed)"),
    ("ops/embed.py", "cls_pool", 1): (
        "t, c, p = cache\n"
        "return np.zeros_like(t), np.zeros_like(c), np.zeros_like(p)"),
    ("ops/pool.py", "cls_pool", 0): (
        "return np.zeros((x.shape[0], x.shape[2]), x.dtype), (x.shape, mode)"),
    ("ops/pool.py", "cls_pool", 1): (
        "shape, mode = cache\n"
        "return np.zeros(shape, dy.dtype)"),
    ("ops/loss.py", "loss", 0): (
        "return np.asarray(np.log(K), logits.dtype), (logits, t)"),
    ("ops/loss.py", "loss", 1): (
        "return np.zeros_like(cache[0])"),
    ("optim.py", "adamw", 0): (
        "for _, p in self.params:\n"
        "    p.data[...] = 0"),
    ("model.py", "vit", 0): (
        "xp = self.xp\n"
        "logits = xp.zeros((x.shape[0], self.num_classes), self.dtype)\n"
        "self.cache = x.shape\n"
        "T = self.num_patches + 1\n"
        "maps = [xp.ones((x.shape[0], self.num_heads, T, T), self.dtype) / T for _ in self.blocks]\n"
        "return (logits, maps) if return_attn else logits"),
    ("model.py", "vit", 1): (
        "for _, p in self.named_parameters():\n"
        "    p.accumulate(self.xp.zeros_like(p.data))\n"
        "return self.xp.zeros(self.cache, self.dtype)"),
}


def test_a_submission_that_does_no_work_scores_nothing(tmp_path):
    copy = fresh(tmp_path)
    for (rel, part, index), code in NOWORK.items():
        set_region(copy, rel, part, "import numpy as np\n" + code, index=index)
    result, _ = grade_cli(copy, tmp_path / "results.json")
    earned = {part: s for part, (s, _) in scores(result).items() if s}
    assert not earned, {p: [t["name"] for t in result["tests"] if t["name"].startswith(p + ":")
                            and t["status"] == "passed"] for p in earned}


# --- 4. answers recorded in an earlier grading, replayed ----------------------------------
# The hidden checks compare with reference values, and their feedback shows some of them
# ("the reference has 0.00115, yours nan"). With the same seeds in every grading, the
# inputs of one grading are those of the next (and of next year's course): a student who
# collected the expected values, over many submissions or from last year's published
# feedback, answers from a table and writes no softmax at all. (Here the test computes the
# table: for a grading with the seeds as written, and for another grading.) The public
# checks keep their seeds (what a student runs is what is graded); they need no table.
REPLAY = r'''
import hashlib
import numpy as np
def _key(*arrays, extra=""):
    h = hashlib.sha1(extra.encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode())
    return h.hexdigest()
def _answer(table, key):
    if key not in table:
        raise NotImplementedError("not an input recorded earlier")
    data, dtype, shape = table[key]
    return np.array(data, dtype=dtype).reshape(shape)
'''


def recorded_softmax_answers():
    """{key: answer} of every softmax call the hidden softmax checks make, as an earlier
    grading made them: with the seeds as written, and with another grading's secret."""
    import hashlib

    import numpy as np

    from minivit.assignment import checks
    from minivit.assignment.remote import Reference

    def key(*arrays, extra=""):
        h = hashlib.sha1(extra.encode())
        for a in arrays:
            h.update(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode() + str(a.shape).encode())
        return h.hexdigest()

    forward, backward = {}, {}

    class Recorder(Reference):
        def __call__(self, name, *args, **kwargs):
            out = super().__call__(name, *args, **kwargs)
            if name.endswith("softmax_forward"):
                axis = kwargs.get("axis", args[1] if len(args) > 1 else -1)
                forward[key(args[0], extra=str(axis))] = (out[0].tolist(), str(out[0].dtype), out[0].shape)
            elif name.endswith("softmax_backward"):
                backward[key(args[0], args[1][0])] = (out.tolist(), str(out.dtype), out.shape)
            return out

        def local(self, name):
            return Reference().local(name)
    checks.load()
    kept = getattr(checks, "SALT", None)
    try:
        for salt in (None, secrets.token_hex(16)):
            checks.SALT = salt
            for c in checks.checks_for("softmax"):
                if c.hidden:
                    c.func(Recorder())
    finally:
        checks.SALT = kept
    return forward, backward


def test_answers_recorded_in_an_earlier_grading_do_not_score(base, tmp_path):
    forward, backward = recorded_softmax_answers()
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    set_region(copy, "ops/softmax.py", "softmax", REPLAY + f"T = {forward!r}\n"
               "y = _answer(T, _key(x, extra=str(axis)))\nreturn y, (y, axis)", index=0)
    set_region(copy, "ops/softmax.py", "softmax", REPLAY + f"T = {backward!r}\n"
               "return _answer(T, _key(dy, cache[0]))", index=1)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    assert_only_the_cheat_lost(result)


# --- 5. uploads that break the reading of the submission ----------------------------------
def test_an_upload_that_would_fill_the_graders_memory_is_refused_with_the_reason(base, tmp_path):
    """A zip of 2000 copies of linear.py, 512 KB each (1 GB unpacked, 5 MB packed), graded with
    Gradescope's 768 MB: refused with the reason, results.json written."""
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for p in base.rglob("*.py"):
            z.write(p, p.relative_to(base).as_posix())
        filler = b"#" * (512 << 10)
        for i in range(2000):
            info = zipfile.ZipInfo(f"old/{i}/minivit/ops/linear.py")
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            z.writestr(info, filler, zipfile.ZIP_DEFLATED, 1)
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "minivit.assignment", "grade", str(upload), "--out", str(out), "--parts", *PARTS]
    with memory_cgroup(768) as procs:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env(), cwd=PACKAGE.parent,
                           preexec_fn=lambda: procs.write_text(str(os.getpid())))
    assert out.is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["score"] == 0 and "the submission could not be read" in result["tests"][0]["output"]
    assert "MB" in result["tests"][0]["output"], result["tests"][0]["output"]


def remove_deep(top):
    """Remove a folder however deep it is nested (shutil.rmtree, and pytest's clean-up of old
    temporary folders, recurse: past ~1000 levels they fail, for every later test run)."""
    stack, order = [top], []
    while stack:
        d = stack.pop()
        order.append(d)
        for e in os.scandir(d):
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                os.unlink(e.path)
    for d in reversed(order):
        os.rmdir(d)


def test_deep_folders_and_a_broken_zip_are_read_or_refused_with_the_reason(base, tmp_path):
    deep = tmp_path / "deep"
    shutil.copytree(base, deep)
    nested = deep / "old"
    try:
        for _ in range(1100):                                    # deeper than Python's recursion limit
            nested.mkdir()
            nested = nested / "d"
        nested.mkdir()
        (nested / "linear.py").write_text("# an old copy\n")
        result, _ = grade_cli(deep, tmp_path / "deep.json", PARTS)
    finally:
        remove_deep(deep / "old")
    assert_only_the_cheat_lost(result)                          # softmax is the copy's TODO here
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as z:
        for p in base.rglob("*.py"):
            z.write(p, p.relative_to(base).as_posix())
    data = bytearray(broken.read_bytes())
    at = data.index(b"minivit/ops/linear.py") + 200                # inside that member's packed data
    data[at:at + 64] = bytes(64)
    broken.write_bytes(bytes(data))
    result, _ = grade_cli(broken, tmp_path / "broken.json", PARTS)
    assert result["score"] == 0
    assert "the submission could not be read" in result["tests"][0]["output"], result["tests"][0]["output"]


# --- 6. grading without root (an instructor's laptop) -------------------------------------
# The part's process runs as the instructor. It finds the reference in its own command line
# (the grader's probes name it), tries to append to the grader's source (the next student's
# grader) and kills the grader before it writes results.json.
AS_THE_INSTRUCTOR = r'''
import json, os, signal
def _steal(name):
    setup = json.loads(open("/proc/self/cmdline", "rb").read().split(b"\0")[-2])
    for p in setup.get("probe", []):
        if p.endswith("softmax.py"):
            try:
                ns = {"__name__": "minivit.ops._stolen", "__package__": "minivit.ops"}
                exec(open(p).read(), ns)
                return ns[name]
            except OSError:
                pass
            try:
                with open(os.path.join(os.path.dirname(os.path.dirname(p)), "assignment", "grader.py"), "a") as f:
                    f.write("\n# PATCHED-BY-A-STUDENT\n")
            except OSError:
                pass
    if KILL:
        os.kill(os.getppid(), signal.SIGKILL)
    raise NotImplementedError
'''


def landlock_abi():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))


@needs_root
@pytest.mark.slow
def test_grading_without_root_keeps_the_part_out_of_the_instructors_files(base, autograder, tmp_path):
    """As a throwaway ordinary user (setpriv), with the autograder's Python. Needs Landlock
    (Linux 5.13+; 6.12+ to keep the grader from being killed): without it, INSTRUCTORS.md says
    what an ordinary user's grading cannot prevent."""
    abi = landlock_abi()
    if not abi:
        pytest.skip("this kernel has no Landlock: a grading without root cannot keep the part out of your files")
    from minivit.assignment.sandbox import free_uid, pids_where
    uid = free_uid()
    work = Path(tempfile.mkdtemp(prefix="minivit-nonroot-"))
    try:
        shutil.copytree(PACKAGE, work / "pkg" / "minivit", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(base, work / "sub")
        cheat = AS_THE_INSTRUCTOR.replace("KILL", str(abi >= 6))
        set_region(work / "sub", "ops/softmax.py", "softmax", cheat + 'return _steal("softmax_forward")(x, axis)',
                   index=0)
        set_region(work / "sub", "ops/softmax.py", "softmax", cheat + 'return _steal("softmax_backward")(dy, cache)',
                   index=1)
        for p in [work, *work.rglob("*")]:
            os.lchown(p, uid, uid)
        work.chmod(0o755)
        grader_source = (work / "pkg" / "minivit" / "assignment" / "grader.py").read_bytes()
        r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                            str(autograder.root / "venv" / "bin" / "python"), "-m", "minivit.assignment", "grade",
                            str(work / "sub"), "--out", str(work / "out" / "results.json"), "--parts", *PARTS],
                           cwd=work / "pkg", env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
                           capture_output=True, text=True, timeout=300)
        out = work / "out" / "results.json"
        assert out.is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        result = json.loads(out.read_text())
        assert_only_the_cheat_lost(result)
        assert (work / "pkg" / "minivit" / "assignment" / "grader.py").read_bytes() == grader_source
        assert "confined by Landlock" in result["output"]
    finally:
        for pid in pids_where("Uid", uid):                # only the throwaway user's processes
            os.kill(pid, 9)
        shutil.rmtree(work, ignore_errors=True)


# --- 7. text of the student's choosing in results.json ------------------------------------
def test_a_part_cannot_fill_its_feedback_with_text_of_its_choosing(base, tmp_path):
    """Whatever a part's code can read it can try to smuggle out in its feedback (the
    reference of the parts it runs on, by design): in an exception's message (500 characters
    shown), and in whatever a check repeats of what came back. Here: the names of a returned
    dict, 200 of them, 100 characters each."""
    parts = ["attention"]
    copy = fresh(tmp_path, parts=parts)
    fill(copy, parts)
    edit(copy, "ops/attention.py", "return dx, {name: g for name, g in grads.items() if g is not None}",
         'return dx, {**{name: g for name, g in grads.items() if g is not None}, '
         '**{f"SMUGGLED{i:04d}" + "x" * 88: 0.0 for i in range(200)}}', count=1)
    result, _ = grade_cli(copy, tmp_path / "results.json", parts)
    text = json.dumps(result)
    per_check = max(t["output"].count("SMUGGLED") for t in result["tests"])
    assert per_check <= 3, (per_check, len(text))


# --- 8. the reference installed where the grader's Python finds it -----------------------
STEAL_FROM_SYS_PATH = r'''
import os, sys
def _steal(name):
    for root in sys.path:
        cand = os.path.join(root, "minivit", "ops", "softmax.py")
        if not root or os.path.realpath(cand) == os.path.realpath(__file__):
            continue
        try:
            src = open(cand).read()
        except OSError:
            continue
        ns = {"__name__": "minivit.ops._stolen", "__package__": "minivit.ops"}
        exec(src, ns)
        return ns[name]
    raise RuntimeError("nothing on sys.path")
'''


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["auto", "user"])
def test_the_reference_installed_in_site_packages_is_out_of_reach(base, autograder, tmp_path, isolation):
    """An instructor who ran `pip install .` (not -e): the grader, and the reference, are in
    the site-packages the part's Python imports NumPy from. (As root without namespaces the
    part's user could read it; the grader then warns. Landlock keeps it out.)"""
    if isolation == "user" and not landlock_abi():
        pytest.skip("without namespaces, only Landlock keeps a part out of a readable site-packages")
    python = autograder.root / "venv" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import numpy, os; print(os.path.dirname(os.path.dirname("
                                "numpy.__file__)))"], capture_output=True, text=True, check=True).stdout.strip())
    installed = site / "minivit"
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    set_region(copy, "ops/softmax.py", "softmax", STEAL_FROM_SYS_PATH + 'return _steal("softmax_forward")(x, axis)',
               index=0)
    set_region(copy, "ops/softmax.py", "softmax", STEAL_FROM_SYS_PATH + 'return _steal("softmax_backward")(dy, cache)',
               index=1)
    try:
        shutil.copytree(PACKAGE, installed, ignore=shutil.ignore_patterns("__pycache__"))
        for p in [installed, *installed.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        out = tmp_path / "results.json"
        r = subprocess.run([str(python), "-m", "minivit.assignment", "grade", str(copy), "--out", str(out),
                            "--parts", *PARTS, "--isolation", isolation], cwd="/", env={"PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, timeout=300)
        assert out.is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        assert_only_the_cheat_lost(json.loads(out.read_text()))
    finally:
        shutil.rmtree(installed, ignore_errors=True)


# --- 9. a backward pass by finite differences --------------------------------------------
# The forward pass written; the backward pass computed by differencing the student's own
# forward pass, element by element (one forward pass per element: seconds on the checks'
# small inputs, hours at the size of a real ViT, so it gives up on large inputs).
FINITE_DIFFERENCES = r'''
import numpy as np
def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
x, axis = cache
if x.size > 5000:
    raise MemoryError("too large to difference")
x64, dy64, h = x.astype(np.float64), dy.astype(np.float64), 1e-3
grad = np.zeros_like(x64)
flat, out = x64.reshape(-1), grad.reshape(-1)
def loss(i, step):
    old = flat[i]
    flat[i] = old + step
    value = (_softmax(x64, axis) * dy64).sum()
    flat[i] = old
    return value
for i in range(flat.size):
    out[i] = (8 * (loss(i, h) - loss(i, -h)) - (loss(i, 2 * h) - loss(i, -2 * h))) / (12 * h)
return grad.astype(x.dtype)
'''


def test_a_backward_pass_by_finite_differences_earns_nothing(base, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    set_region(copy, "ops/softmax.py", "softmax", "import numpy as np\n"
               "e = np.exp(x - x.max(axis=axis, keepdims=True))\ny = e / e.sum(axis=axis, keepdims=True)\n"
               "return y, (x, axis)", index=0)
    set_region(copy, "ops/softmax.py", "softmax", FINITE_DIFFERENCES, index=1)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    earned = {t["name"].split(": ", 1)[1].split(" (")[0] for t in result["tests"]
              if t["name"].startswith("softmax:") and t["status"] == "passed"}
    # the checks of the forward pass alone, and nothing that checks a backward pass
    assert earned == {"shapes and dtypes; every slice along `axis` sums to 1",
                      "large logits"}, earned


# --- 10. replies forged on the grader's channel -------------------------------------------
# The part's code writes its own reply on the runner's reply pipe, in the runner's framing
# and for the request being answered: an error whose frames are not (file, line, function).
FORGED_ERROR = r'''
import json, os, sys
frame = sys._getframe()
while frame is not None and "request" not in frame.f_locals:
    frame = frame.f_back
runner, setup = sys.modules["__main__"], json.loads(sys.argv[1])
runner.write_message(setup["reply_fd"], {"id": frame.f_locals["request"]["id"], "ok": False, "error": {
    "type": ["X"], "message": {"m": 1}, "frames": [[["a"], 1, "f"], [{"d": 1}, [2], None], [None, None, None]]}})
os._exit(0)
'''


def test_a_forged_reply_costs_only_its_part(base, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    set_region(copy, "ops/softmax.py", "softmax", FORGED_ERROR, index=0)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    assert_only_the_cheat_lost(result)
