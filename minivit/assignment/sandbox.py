"""Where a part's process runs, and how nothing of it outlives the part.

Three levels, chosen once per grading (`detect`):

* "namespace" (root, where `unshare` works: Linux with CAP_SYS_ADMIN, e.g. CI, a VM, a
  privileged container): new mount, PID and (where it works) network namespaces; the
  process sees a root filesystem of its own: read-only system folders, the Python
  installation and the part's tree, a small tmpfs as home; nothing else of the machine
  (not the grader, the reference package, the hidden checks, the submission, the results).
  It runs as a fresh unprivileged uid; stopping it ends the namespace and every process in it.
* "user" (root without namespaces, as in Gradescope's containers): a fresh unprivileged uid
  (no account needed) with no_new_privs; what it cannot read is up to file permissions
  (setup.sh makes the autograder's folders root-only); after the part, every process of
  that uid is killed.
* "none" (not root, an instructor's laptop): the instructor's own user; the process group
  is killed after the part and orphans (setsid) are collected as this process is their
  subreaper. Isolation is weaker there and the output says so (INSTRUCTORS.md).
"""
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .remote import MAX_REPLY

SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc")
# writable by every user: what a part's process writes there outlives it (user mode)
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue")
HOME_MB = 64
ACTIVE = set()          # pids of the part processes running now (several with --jobs)


class Isolation:
    def __init__(self, mode, net=False, unshare=None):
        self.mode, self.net, self.unshare = mode, net, unshare

    def describe(self, landlock=None):
        """landlock: the Landlock ABI every part ran under (None: not every part had it)."""
        confined = ""
        if landlock:
            confined = (", confined by Landlock (it could read only the system's folders, Python's and its own, "
                        "write only its home" + (", and signal no other process)" if landlock >= 6 else
                                                 "; this kernel could not stop it signalling your processes: "
                                                 "Linux 6.12 can)"))
        if self.mode == "namespace":
            return ("each part ran as a fresh unprivileged user in namespaces of its own (its own root "
                    "filesystem and processes" + (", no network)" if self.net else ")"))
        if self.mode == "user":
            if confined:
                return "each part ran as a fresh unprivileged user (no namespaces here)" + confined
            return ("each part ran as a fresh unprivileged user (no namespaces here: what it could read is up "
                    "to file permissions)")
        if confined:
            return ("isolation is weaker than as root: the grader is not root, so each part ran as your own "
                    "user" + confined + "; grade as root or in a container for full isolation (INSTRUCTORS.md)")
        return ("isolation is weaker: the grader is not root, so each part ran as your own user and could read "
                "what you can, and write your files (grade as root or in a container for full isolation, or on "
                "Linux 5.13+ with Landlock: INSTRUCTORS.md)")


def detect(requested="auto"):
    """The strongest isolation this machine allows (requested "user": no namespaces)."""
    if os.geteuid() != 0:
        return Isolation("none")
    unshare = shutil.which("unshare") or next((p for p in ("/usr/bin/unshare", "/bin/unshare")
                                                if os.path.exists(p)), None)
    if requested == "user" or unshare is None:
        return Isolation("user")
    base = [unshare, "--mount", "--pid", "--ipc", "--fork", "--kill-child", "--mount-proc"]

    def works(cmd):
        try:
            return subprocess.run(cmd + ["--", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    if not works(base):
        return Isolation("user")
    return Isolation("namespace", net=works(base + ["--net"]), unshare=unshare)


def _status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def pids_where(field, value):
    """Processes whose /proc status field (Uid: the real uid; PPid) equals value."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _status_field(p, field) == value]


def kill_uid(uid, timeout=10.0):
    """SIGKILL every process of `uid` until none is left (forks racing included)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pids = pids_where("Uid", uid)
        if not pids:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return False


def remove_files_of(uid, folders=SHARED_DIRS, depth=4):
    """Remove what `uid` left in the machine's world-writable folders (/tmp, /dev/shm...),
    where a later part or grading could find it, or where it fills the disk; the part's home
    goes with its folder. World-writable folders of other owners inside them are searched
    too. Call it once no process of `uid` is left."""
    for folder in dict.fromkeys(os.path.realpath(f) for f in folders):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == uid:
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(e.path, ignore_errors=True)        # never follows a link
                else:
                    try:
                        os.unlink(e.path)
                    except OSError:
                        pass
            elif stat.S_ISDIR(st.st_mode) and st.st_mode & 0o002 and depth > 1:
                remove_files_of(uid, (e.path,), depth - 1)


def free_uid():
    """An unprivileged uid no process uses (none of the system's accounts)."""
    while True:
        uid = random.randrange(1_000_000_000, 2_000_000_000)
        if not pids_where("Uid", uid):
            return uid


def become_subreaper():
    """Orphans of the parts (a setsid daemon) become this process's children, to be killed."""
    import ctypes
    try:
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)         # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _python_paths():
    """The folders the part's Python needs: its installation and NumPy's."""
    import numpy
    site = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    exe = os.path.abspath(sys.executable)
    dirs = {sys.base_prefix, sys.prefix, os.path.dirname(exe), os.path.dirname(os.path.realpath(exe)), site}
    return site, sorted(d for d in dirs if d)


def python_unreachable():
    """None, or why an unprivileged user cannot run this Python (user mode: no filesystem of
    its own): a folder on the way to the interpreter or to NumPy that others cannot enter."""
    site, dirs = _python_paths()
    for target in [os.path.realpath(sys.executable), site] + dirs:
        path = Path(target)
        for folder in [*reversed(path.parents), path]:
            mode = folder.stat().st_mode
            if folder.is_dir() and not mode & 0o001 or folder.is_file() and not mode & 0o005:
                return (f"the parts' unprivileged user cannot run the grader's Python {sys.executable}: "
                        f"{folder} is not open to other users. Install Python and NumPy where every user "
                        f"can read them (the Gradescope setup.sh does), or grade where unshare works")
    return None


def _readable(roots, hidden):
    """(what a part may read, the folders it may only list): each root whole or, where a
    hidden path lies inside it, the root listed (names are no secret) and every entry of it
    but the one that is (or leads to) the hidden path. Landlock rules only allow, and a
    folder allowed is allowed with everything beneath it. Links are judged by where they
    point."""
    hidden = [os.path.realpath(h) for h in hidden]

    def inside(path, folder):
        return path == folder or path.startswith(folder.rstrip("/") + "/")
    read, listed = [], []
    for root in roots:
        real = os.path.realpath(root)
        if any(inside(real, h) for h in hidden):
            continue
        if not any(inside(h, real) for h in hidden):
            read.append(root)
            continue
        try:
            entries = sorted(os.listdir(real))
        except OSError:
            continue
        more_read, more_listed = _readable([os.path.join(real, e) for e in entries], hidden)
        read += more_read
        listed += [real] + more_listed
    return read, listed


def _outermost(paths):
    out = []
    for p in sorted(set(paths)):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


class PartProcess:
    """The part's runner process, started under the isolation chosen (see the module)."""

    def __init__(self, isolation, part_dir, tree, limits, hide=(), probe=(), probe_write=(), uid=None):
        self.isolation, self.uid = isolation, uid
        site, py_dirs = _python_paths()
        reply_r, reply_w = os.pipe()
        home = str(part_dir / "home")
        setup = {"tree": str(tree), "home": home, "paths": [site], "reply_fd": reply_w, "uid": uid,
                 "limits": limits, "max_reply": MAX_REPLY, "probe": [str(p) for p in probe],
                 "probe_write": [str(p) for p in probe_write]}
        prefix = []
        ro = _outermost([d for d in SYSTEM_DIRS if os.path.lexists(d)] + py_dirs + [str(tree)])
        # covered where they lie inside a folder the part reads (the reference installed in
        # site-packages); never a folder holding one (a .venv inside the instructor's checkout
        # stays visible, the package beside it does not)
        hide = {str(h) for h in hide if not any(r.startswith(str(h).rstrip("/") + "/") for r in ro)}
        # Landlock, in every mode (jail.restrict_files): all the part may read, and its home
        readable, listable = _readable(ro, hide)
        setup["files"] = {"readable": readable + ["/proc", "/sys"], "listable": listable, "writable": [home],
                          "devices": ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"]}
        if isolation.mode == "namespace":
            setup["jail"] = {"root": str(part_dir / "root"), "ro": ro, "home": home, "uid": uid,
                             "home_mb": HOME_MB, "hide": sorted(hide)}
            prefix = [isolation.unshare, "--mount", "--pid", "--ipc", "--fork", "--kill-child", "--mount-proc"]
            prefix += ["--net"] if isolation.net else []
            prefix += ["--"]
        cmd = prefix + [sys.executable, "-I", "-S", str(tree / "runner.py"), json.dumps(setup)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(reply_w,), cwd="/",
                                     start_new_session=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
        os.close(reply_w)
        ACTIVE.add(self.proc.pid)
        self.reply_fd = reply_r
        self.request_fd = self.proc.stdin.fileno()
        os.set_blocking(self.request_fd, False)

    def why_stopped(self, memory_mb=None):
        """Words for how the process ended (waits a moment for its exit status)."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the part's process stopped answering"
        if code < 0 or code > 128:                      # a signal (> 128: via the namespace's init)
            num = -code if code < 0 else code - 128
            name = signal.Signals(num).name if num in signal.Signals._value2member_map_ else f"signal {num}"
            hint = {"SIGKILL": " (out of memory? each part may use the memory limit given to the grader)",
                    "SIGXCPU": " (the CPU time limit)", "SIGSEGV": " (a crash)", "SIGXFSZ": " (a file too large)"}
            return f"the part's process was killed by {name}{hint.get(name, '')}"
        return f"the part's process ended early (exit code {code}): does your code call exit()?"

    def stop(self):
        """End the process and everything it started."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)    # unshare and its namespace, or the group
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        ACTIVE.discard(self.proc.pid)
        if self.uid is not None:
            kill_uid(self.uid)
        if self.isolation.mode == "none":
            reap_orphans()
        for fd in (self.reply_fd,):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass


def reap_orphans(rounds=50):
    """Kill and reap this process's children that are no running part (orphans of a part
    re-parented here, as this process is their subreaper)."""
    me = os.getpid()
    for _ in range(rounds):
        orphans = [p for p in pids_where("PPid", me) if p not in ACTIVE]
        if not orphans:
            return
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def make_part_dir(uid):
    """A folder for one part, which only the part's user may enter: tree/ (root's, read-only
    to the part), home/ (the part's) and root/ (the mount point of its filesystem in
    namespace mode)."""
    d = Path(tempfile.mkdtemp(prefix="minivit-part-"))
    (d / "tree").mkdir(mode=0o755)
    (d / "home").mkdir(mode=0o700)
    (d / "root").mkdir(mode=0o755)
    if uid is None:
        d.chmod(0o755)
    else:                       # the part's user alone (its group) may enter: not another part's
        os.chown(d, 0, uid)
        d.chmod(0o750)
        os.chown(d / "home", uid, uid)
    return d


def write_tree(tree, files):
    """{relative path: text} under tree, read-only for everyone but its owner."""
    for rel, text in files.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tree).parents:
            (tree / parent).chmod(0o755)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
