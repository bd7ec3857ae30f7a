"""The submission, read once into memory before any of its code runs, and the source of
each part's tree made from it.

A submission is a folder or a .zip (the whole copy, its minivit folder, or loose files such
as linear.py: each file is found by the longest matching path suffix). Only regular files
named like a file of a part's tree (or assignment.json) are read (a symbolic link is never
followed: it could point at the grader's own files), each up to MAX_FILE bytes, MAX_TOTAL
in all, at most MAX_DEPTH folders deep; nothing of it is read again later: what a part's
process does to the folder cannot change what another part is graded on.

A part's tree is the reference package with, in every file, the regions of that part
replaced by the student's text between their markers, the regions of the parts it builds
on (parts.NEEDS) kept, and every other region replaced by a stub that raises. Each
region of the student must parse as statements of its function's body: code dedented out
of the function (which would run when the module is imported) is refused, naming the file
and line.
"""
import ast
import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .markers import HINT, MarkerError, find_regions
from .parts import PARTS, needs

MAX_FILE = 512 << 10        # bytes of one file
MAX_FILES = 20_000          # files listed in one submission
MAX_TOTAL = 64 << 20        # bytes read in all (a whole copy holds ~1 MB of them)
MAX_DEPTH = 40              # folders below the submission's own
WANTED = (".py", ".json")   # the only files read (without `names`)

# what a part's process executes: the library the checks call, the glue, and the runner
TREE_FILES = ("__init__.py", "backend.py", "init.py", "kernels.py", "model.py", "nn.py", "optim.py",
              "assignment/drivers.py")
TREE_ASSIGNMENT_INIT = '"""minivit.assignment in a part\'s tree: only the checks\' glue (drivers.py)."""\n'


class Submission:
    """{path inside the submission: bytes} of its .py and .json files."""

    def __init__(self, files, path):
        self.files, self.path = files, path

    @classmethod
    def read(cls, path, names=None):
        """names: the file names worth reading (default: every .py and .json file). Raises
        ValueError (or FileNotFoundError) with the reason where it cannot be read."""
        path = Path(path).resolve()
        wanted = (lambda name: name in names) if names else (lambda name: name.endswith(WANTED))
        budget = [MAX_TOTAL]
        if path.is_file() and zipfile.is_zipfile(path):
            try:
                return cls(_read_zip(path, wanted, budget), path)
            except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, OSError) as e:
                raise ValueError(f"{path.name} could not be unpacked ({type(e).__name__}: {e})") from None
        if not path.is_dir():
            raise FileNotFoundError(f"the submission {path} is not a folder or a .zip file")
        return cls(_read_dir(path, wanted, budget), path)

    def locate(self, rel):
        """(path in the submission, text) of the student's minivit/<rel>, or (None, why)."""
        want = ("minivit",) + PurePosixPath(rel).parts
        best, best_n, tie = None, 0, False
        for name in self.files:
            parts = PurePosixPath(name).parts
            if parts[-1] != want[-1]:
                continue
            n = 0
            while n < min(len(parts), len(want)) and parts[-1 - n] == want[-1 - n]:
                n += 1
            if (n, -len(parts)) > (best_n, -len(PurePosixPath(best).parts) if best else 0):
                best, best_n, tie = name, n, False
            elif n == best_n and len(parts) == len(PurePosixPath(best).parts):
                tie = True
        if best is None:
            return None, f"minivit/{rel} was not found in the submission"
        if tie:
            return None, f"minivit/{rel}: several files in the submission could be it (upload one minivit folder)"
        data = self.files[best]
        if data is None:
            return None, f"{best} is larger than {MAX_FILE >> 10} KB"
        try:
            return best, data.decode("utf-8").replace("\r\n", "\n")
        except UnicodeDecodeError:
            return None, f"{best} is not UTF-8 text"


def _take(files, name, data, budget):
    """Keep one file's bytes (None: larger than MAX_FILE) within the submission's budget."""
    if data is not None and len(data) > MAX_FILE:
        data = None
    budget[0] -= len(data or b"")
    if budget[0] < 0:
        raise ValueError(f"it holds more than {MAX_TOTAL >> 20} MB of files named like minivit's: upload your "
                         f"minivit folder (or the files you edited) only")
    files[name] = data


def _read_dir(root, wanted, budget):
    files, stack = {}, [(root, 0)]
    while stack:                    # without recursion: a folder may be nested thousands deep
        folder, depth = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH and e.name not in ("__pycache__", ".git", "__MACOSX"):
                    stack.append((e.path, depth + 1))
                continue
            if not wanted(e.name):
                continue
            if len(files) >= MAX_FILES:
                return files
            try:
                fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError:
                continue                                    # a symbolic link, or unreadable
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                data = os.read(fd, MAX_FILE + 1)
            finally:
                os.close(fd)
            _take(files, Path(e.path).relative_to(root).as_posix(), data, budget)
    return files


def _read_zip(path, wanted, budget):
    files = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist()[:MAX_FILES]:
            name = PurePosixPath(info.filename.lstrip("/"))
            kind = stat.S_IFMT(info.external_attr >> 16)           # 0: no Unix type recorded
            if info.is_dir() or ".." in name.parts or not wanted(name.name) or "__MACOSX" in name.parts \
                    or kind not in (0, stat.S_IFREG):
                continue
            with z.open(info) as f:
                data = f.read(MAX_FILE + 1)
            _take(files, name.as_posix(), data, budget)
    return files


# --- a part's tree ------------------------------------------------------------------------
def tree_files(package):
    """The package's files a part's process executes (relative paths)."""
    rels = [Path(r) for r in TREE_FILES]
    rels += sorted(p.relative_to(package) for p in (package / "ops").glob("*.py"))
    return rels


def part_tree(part, submission, package, regions):
    """({path in the tree: text}, line map, problem or None) for grading `part`.
    line map: {(path in the tree, line): (path in the submission, line, text)}, for the
    student's own lines."""
    keep = set(needs(part)) | {part}
    files, line_map = {}, {}
    for rel in tree_files(package):
        text = (package / rel).read_text(encoding="utf-8")
        where = f"minivit/{rel.as_posix()}"
        rs = regions.get(rel, [])
        if not rs:
            files[where] = text
            continue
        bodies = {}
        if any(r.part == part for r in rs):
            submitted, student = submission.locate(rel)
            if submitted is None:
                return {}, {}, student
            try:
                theirs = [r for r in find_regions(student, submitted, PARTS, kinds=("YOUR CODE", "SOLUTION"),
                                                  require_hint=False) if r.part == part]
            except MarkerError as e:
                return {}, {}, f"the markers of {submitted} are broken: {e}"
            mine = [r for r in rs if r.part == part]
            if len(theirs) != len(mine):
                return {}, {}, (f"{submitted}: {len(theirs)} region(s) of part {part!r}, expected {len(mine)} "
                                f"(keep the '### BEGIN YOUR CODE {part}' / '### END YOUR CODE' lines)")
            lines = student.split("\n")
            for r, s in zip(mine, theirs):
                bodies[id(r)] = [(ln, (submitted, s.begin + 2 + k, ln)) for k, ln in enumerate(s.body(lines))
                                 if not ln.lstrip().startswith(HINT)]
        ref_lines, out, last, blocks = text.split("\n"), [], 0, []
        for r in rs:
            out.extend((ln, None) for ln in ref_lines[last:r.begin + 1])
            if r.part == part:
                blocks.append((len(out), r.function, range(len(out) + 1, len(out) + 1 + len(bodies[id(r)]))))
                out.extend(bodies[id(r)])
            elif r.part in keep:
                out.extend((ln, None) for ln in r.body(ref_lines))
            else:
                out.append((f"{r.indent}raise NotImplementedError({(r.part + ' is not part of this grading')!r})", None))
            last = r.end
        out.extend((ln, None) for ln in ref_lines[last:])
        files[where] = "\n".join(ln for ln, _ in out)
        line_map.update({(where, n): origin for n, (_, origin) in enumerate(out, 1) if origin is not None})
        problem = check_regions(files[where], where, blocks, line_map)
        if problem:
            return {}, {}, problem
    files["minivit/assignment/__init__.py"] = TREE_ASSIGNMENT_INIT
    return files, line_map, None


def check_regions(text, where, blocks, line_map):
    """None, or why the student's lines in this file cannot be run: a syntax error, or code
    outside the function its region is in. blocks: (line of the BEGIN marker, the
    function's name, the lines of the student's code), lines counted in the tree's file."""
    if not blocks:
        return None
    mine = sorted(n for (w, n) in line_map if w == where)
    try:
        tree = ast.parse(text, filename=where)
    except SyntaxError as e:
        path, n, line = line_map.get((where, e.lineno or 0), (None, None, None))
        if path is None:                  # reported after their lines (an unclosed bracket...)
            path, n, line = line_map[(where, max((m for m in mine if m <= (e.lineno or 0)), default=mine[0]))]
        return f"{path}, line {n}: {type(e).__name__}: {e.msg}\n      {line.strip()[:200]}"
    except (RecursionError, MemoryError, ValueError) as e:
        return f"{line_map[(where, mine[0])][0]} could not be parsed ({type(e).__name__})"
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for marker, name, lines in blocks:
        before = [f for f in functions if f.name == name and f.lineno <= marker]
        owner = max(before, key=lambda f: f.lineno) if before else None
        for n in lines:
            path, sn, line = line_map[(where, n)]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if owner is None or not owner.lineno < n <= owner.end_lineno:
                return (f"{path}, line {sn}: this line is outside {name}: the code between the markers must "
                        f"stay inside {name}, in its body (indented like the marker lines); code outside a "
                        f"function would run when the module is imported\n      {line.strip()[:200]}")
    return None
