"""What the part's process does to itself before any student code exists in it.

The grader copies this file beside runner.py into the part's folder; the runner calls, in
order: enter_jail (namespaces only: a root filesystem of its own), be_init (PID 1 of the
namespace), set_limits, first_to_go (the kernel's out-of-memory killer takes the part's
processes first), drop_privileges (to the part's unprivileged uid, as root) or
no_new_privileges (as an ordinary user), then restrict_files (Landlock, where the kernel
has it: the process reads only the system's folders, the Python installation and its tree,
writes only its home, and cannot signal or trace a process outside it: as an ordinary user
this is what keeps it out of the instructor's files and away from the grader) and
deny_syscalls: a seccomp filter that refuses the system calls through which something
could outlive the part or reach another process (System V IPC, POSIX message queues and
keyrings persist on the machine; sockets reach other processes; ptrace and process_vm_*
read another process's memory). Standard library only.
"""
import os
import platform

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2

# (the audit architecture, {system call: number}) of the machines the filter knows; a
# denied call fails with EPERM, as a missing permission would
DENIED = {
    "x86_64": (0xC000003E, {"socket": 41, "shmget": 29, "semget": 64, "msgget": 68, "ptrace": 101,
                            "mq_open": 240, "add_key": 248, "request_key": 249, "keyctl": 250,
                            "process_vm_readv": 310, "process_vm_writev": 311, "io_uring_setup": 425}),
    "aarch64": (0xC00000B7, {"socket": 198, "shmget": 194, "semget": 190, "msgget": 186, "ptrace": 117,
                             "mq_open": 180, "add_key": 217, "request_key": 218, "keyctl": 219,
                             "process_vm_readv": 270, "process_vm_writev": 271, "io_uring_setup": 425}),
}
X32_BIT = 0x40000000                                    # x86_64's other ABI: refused whole
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, EPERM = 0x7FFF0000, 0x00050000, 1

# Landlock (Linux >= 5.13): the same system call numbers on every architecture
LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_RULE_PATH_BENEATH = 1, 1
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
ALL_FS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
TRUNCATE, IOCTL_DEV = 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc, ctypes


def _mount(src, target, fstype, flags, data=None):
    libc, ctypes = _libc()
    enc = (lambda s: None if s is None else s.encode())
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def enter_jail(jail):
    """A root filesystem of its own: an empty tmpfs with read-only binds of the system's
    folders, the Python installation and the part's tree, a small writable tmpfs for home,
    a few /dev nodes and the new PID namespace's /proc; every path in jail["hide"] (inside
    a bound folder) is covered. Needs root in a new mount namespace (unshare --mount)."""
    new = jail["root"]
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    for src in jail["ro"]:
        dst = new + src
        if os.path.islink(src):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(os.readlink(src), dst)
            continue
        if not os.path.exists(src):
            continue
        os.makedirs(dst, exist_ok=True)
        _mount(src, dst, None, MS_BIND | MS_REC)
        _mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # the only writable place: a small tmpfs of the part's user, gone with the namespace
    home, uid = new + jail["home"], jail["uid"]
    os.makedirs(home, exist_ok=True)
    _mount("tmpfs", home, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,size={jail['home_mb']}m" + (f",uid={uid},gid={uid}" if uid is not None else ""))
    for hidden in jail["hide"]:
        if os.path.isdir(new + hidden):
            _mount("tmpfs", new + hidden, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=0,size=4k")
        elif os.path.exists(new + hidden):
            _mount("/dev/null", new + hidden, None, MS_BIND)
    os.makedirs(new + "/dev", exist_ok=True)
    for name in ("null", "zero", "random", "urandom"):
        open(new + "/dev/" + name, "a").close()
        _mount("/dev/" + name, new + "/dev/" + name, None, MS_BIND)
    os.makedirs(new + "/proc", exist_ok=True)
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount(None, new, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(new)
    os.chdir("/")


def be_init(child):
    """PID 1 of the part's namespace: reap every orphan; exit as the part's process did
    (128 + the signal that killed it), which ends the namespace and all that is left in it.
    (As PID 1 the part's process itself would be deaf to signals it sends itself.)"""
    while True:
        pid, status = os.wait()
        if pid == child:
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def set_limits(limits):
    import resource
    for name, value in limits.items():
        kind = getattr(resource, name)
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(kind, (value, value))


def no_new_privileges():
    """No setuid program (and no file capability) can raise this process's privileges."""
    libc, _ = _libc()
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def drop_privileges(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    no_new_privileges()
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SystemExit("could not drop root privileges")


def first_to_go():
    """The out-of-memory killer's first choice, for this process and every child: a part
    that exhausts the machine's memory loses its own processes, not the grader. (Before
    dropping privileges: after a change of uid /proc/self is no longer this process's.)"""
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass


def restrict_files(readable, listable, writable, devices):
    """Landlock: from now on this process and its children may read (and run) only what is
    beneath `readable`, list the folders beneath `listable`, write only beneath `writable`,
    use the `devices` files, and (ABI 6) neither signal a process outside nor reach its
    abstract sockets. Returns the Landlock ABI in force, or None where the kernel has none."""
    libc, ctypes = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return None
    handled = ALL_FS[min(abi, 5)]

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]
    attr = Ruleset(handled, 0, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return None
    file_rights = (EXECUTE | WRITE_FILE | READ_FILE) | (handled & (TRUNCATE | IOCTL_DEV))
    try:
        for paths, rights in ((readable, EXECUTE | READ_FILE | READ_DIR), (listable, READ_DIR),
                              (writable, handled), (devices, file_rights)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue                                    # not on this machine
                try:
                    rule = PathBeneath(rights if os.path.isdir(path) else rights & file_rights, fd)
                    if libc.syscall(LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule),
                                    ctypes.c_uint32(0)) != 0:
                        return None                             # the grader warns: no restriction
                finally:
                    os.close(fd)
        if libc.syscall(LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            return None
    finally:
        os.close(ruleset)
    return abi


def deny_syscalls():
    """The seccomp filter of the module's docstring. Returns the names of the calls refused,
    or None where it could not be installed (an architecture it does not know). Needs
    no_new_privs (set before)."""
    known = DENIED.get(platform.machine())
    if known is None:
        return None
    arch, calls = known
    libc, ctypes = _libc()

    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06             # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE|K, BPF_RET|K
    deny = SECCOMP_RET_ERRNO | EPERM
    tests = ([(jge, X32_BIT)] if arch == DENIED["x86_64"][0] else []) + [(jeq, n) for n in calls.values()]
    insns = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny),    # another architecture's calls (int 0x80)
             (ld, 0, 0, 0)]                                          # the call's number
    insns += [(op, len(tests) - i, 0, k) for i, (op, k) in enumerate(tests)]
    insns += [(ret, 0, 0, SECCOMP_RET_ALLOW), (ret, 0, 0, deny)]
    program = (Insn * len(insns))(*[Insn(*i) for i in insns])
    prog = Prog(len(insns), program)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0) != 0:
        return None
    return sorted(calls)
