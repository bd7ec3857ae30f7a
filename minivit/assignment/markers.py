"""Solution regions in source text: finding them, turning them into exercises, and putting
a student's answers back into the solution.

In the library source (the solution):

        ### BEGIN SOLUTION linear
        ### HINT: one product with the transposed weight, ...
        y = x @ w.T
        ...
        ### END SOLUTION

In the student copy the same region reads

        ### BEGIN YOUR CODE linear
        # TODO (linear): one product with the transposed weight, ...
        raise NotImplementedError("linear: linear_forward in minivit/ops/linear.py")
        ### END YOUR CODE

and the student writes between these two marker lines; the grader takes what is there.
Markers are whole-line comments. A region may not contain another, must be closed, and
must name a known part: anything else is a MarkerError naming the file and line.
"""
import json
import re
from dataclasses import dataclass

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
S_BEGIN, S_END = "### BEGIN YOUR CODE", "### END YOUR CODE"

_MARKER = re.compile(r"^\s*###\s*(BEGIN|END|HINT)\b", re.MULTILINE)
_BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN (?P<kind>SOLUTION|YOUR CODE)(?: (?P<part>\S+))?\s*$")
_END = re.compile(r"^(?P<indent>\s*)### END (?P<kind>SOLUTION|YOUR CODE)\s*$")
_HINT = re.compile(r"^\s*### HINT:(?P<hint>.*)$")
_DEF = re.compile(r"^(?P<indent>\s*)(?:async\s+)?def\s+(?P<name>\w+)")


class MarkerError(ValueError):
    """A malformed region; the message starts with file:line."""


@dataclass
class Region:
    path: str          # as given to find_regions (for messages)
    part: str
    begin: int         # 0-based line index of the BEGIN marker
    end: int           # 0-based line index of the END marker
    indent: str
    hint: str
    function: str      # the enclosing def, for messages ("" at module level)

    def body(self, lines):
        """The lines strictly between the markers."""
        return lines[self.begin + 1:self.end]


def find_regions(text, path, parts=None, kinds=("SOLUTION",), require_hint=None):
    """Every region of `text`, in order. parts: the known part names (None: any name);
    kinds: which BEGIN forms to accept ("SOLUTION", "YOUR CODE"). A solution region must
    have a HINT line (require_hint defaults to True when only "SOLUTION" is accepted)."""
    if require_hint is None:
        require_hint = tuple(kinds) == ("SOLUTION",)
    lines = text.split("\n")
    regions, open_ = [], None
    for i, line in enumerate(lines):
        if not _MARKER.match(line):
            continue
        where = f"{path}:{i + 1}"
        b, e, h = _BEGIN.match(line), _END.match(line), _HINT.match(line)
        if b:
            if b["kind"] not in kinds:
                raise MarkerError(f"{where}: '### BEGIN {b['kind']}' is not expected here "
                                  f"(expected '### BEGIN {kinds[0]} <part>')")
            if open_ is not None:
                raise MarkerError(f"{where}: nested region: a BEGIN inside the region opened at "
                                  f"{path}:{open_['line'] + 1} (close it with '### END {open_['kind']}' first)")
            part = b["part"]
            if not part:
                raise MarkerError(f"{where}: BEGIN without a part name ('### BEGIN {b['kind']} <part>')")
            if parts is not None and part not in parts:
                raise MarkerError(f"{where}: unknown part {part!r} (the parts are {', '.join(parts)})")
            open_ = {"line": i, "part": part, "indent": b["indent"], "kind": b["kind"], "hint": None}
        elif e:
            if open_ is None:
                raise MarkerError(f"{where}: END without a BEGIN")
            if e["kind"] != open_["kind"]:
                raise MarkerError(f"{where}: '### END {e['kind']}' closes '### BEGIN {open_['kind']}' "
                                  f"of {path}:{open_['line'] + 1}")
            if e["indent"] != open_["indent"]:
                raise MarkerError(f"{where}: END is not indented like its BEGIN at {path}:{open_['line'] + 1}")
            if require_hint and open_["hint"] is None:
                raise MarkerError(f"{path}:{open_['line'] + 1}: region of part {open_['part']!r} has no "
                                  f"'### HINT: ...' line (put one right after the BEGIN line)")
            regions.append(Region(path, open_["part"], open_["line"], i, open_["indent"],
                                  open_["hint"] or "", _enclosing_def(lines, open_["line"])))
            open_ = None
        elif h:
            if open_ is None:
                raise MarkerError(f"{where}: HINT outside a region")
            if i != open_["line"] + 1 + (open_["hint"] is not None):
                raise MarkerError(f"{where}: a HINT line must come right after the BEGIN line")
            hint = h["hint"].strip()
            open_["hint"] = hint if open_["hint"] is None else open_["hint"] + " " + hint
        else:
            raise MarkerError(f"{where}: malformed marker {line.strip()!r} (expected "
                              f"'### BEGIN SOLUTION <part>', '### HINT: ...' or '### END SOLUTION')")
    if open_ is not None:
        raise MarkerError(f"{path}:{open_['line'] + 1}: unterminated region of part {open_['part']!r} "
                          f"(no '### END {open_['kind']}' before the end of the file)")
    return regions


def _enclosing_def(lines, i):
    indent = len(lines[i]) - len(lines[i].lstrip())
    for j in range(i - 1, -1, -1):
        m = _DEF.match(lines[j])
        if m and len(m["indent"]) < indent:
            return m["name"]
    return ""


def student_text(text, path, selected, parts=None, relpath=None):
    """The student copy of one source file: regions of the selected parts (None: every
    region) become exercises (markers kept, in the student form), the other regions keep
    their code without any marker or hint line. Returns (new text, regions)."""
    lines = text.split("\n")
    regions = find_regions(text, path, parts)
    out, last = [], 0
    for r in regions:
        out.extend(lines[last:r.begin])
        body = [ln for ln in r.body(lines) if not _HINT.match(ln)]
        if selected is None or r.part in selected:
            where = f"{r.function} in {relpath or path}" if r.function else (relpath or path)
            out += [f"{r.indent}{S_BEGIN} {r.part}",
                    f"{r.indent}# TODO ({r.part}): {r.hint}",
                    f"{r.indent}raise NotImplementedError({(r.part + ': ' + where)!r})",
                    f"{r.indent}{S_END}"]
        else:
            out += body
        last = r.end + 1
    out.extend(lines[last:])
    return "\n".join(out), regions


def solution_lines(text, path, selected, parts=None):
    """(lines inside regions of the selected parts, code lines everywhere else). Lines of
    multi-line strings (docstrings) are in neither: text that also appears in a region
    must not be excused by a docstring that repeats it."""
    lines = text.split("\n")
    inside = set()
    for r in find_regions(text, path, parts):
        if r.part in selected:
            inside.update(range(r.begin + 1, r.end))
    strings = _string_rows(text)
    return ([lines[i] for i in sorted(inside)],
            [ln for i, ln in enumerate(lines) if i not in inside and i not in strings])


def _string_rows(text):
    """0-based indices of the lines that a multi-line string token spans."""
    import io
    import tokenize
    rows = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                rows.update(range(tok.start[0] - 1, tok.end[0]))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return rows


def splice(solution, student, part, sol_path, stu_path, parts=None):
    """The solution text with the regions of `part` replaced by the student's (matched in
    order). Raises MarkerError if the student's file does not have the same regions."""
    sol_lines, stu_lines = solution.split("\n"), student.split("\n")
    mine = [r for r in find_regions(solution, sol_path, parts) if r.part == part]
    theirs = [r for r in find_regions(student, stu_path, parts, kinds=("YOUR CODE", "SOLUTION"),
                                      require_hint=False) if r.part == part]
    if len(theirs) != len(mine):
        raise MarkerError(f"{stu_path}: {len(theirs)} region(s) of part {part!r}, expected {len(mine)} "
                          f"(keep the '### BEGIN YOUR CODE {part}' / '### END YOUR CODE' lines)")
    out, last = [], 0
    for r, s in zip(mine, theirs):
        out.extend(sol_lines[last:r.begin + 1])
        out.extend(ln for ln in s.body(stu_lines) if not _HINT.match(ln))
        last = r.end
    out.extend(sol_lines[last:])
    return "\n".join(out)


# --- notebooks ----------------------------------------------------------------------------
def student_notebook(text, path, selected, parts=None):
    """The same transformation for a Jupyter notebook: each code cell's source is treated
    as a file of its own (a region may not span cells), and every output is cleared, so
    no solution survives in a rendered output either. selected=None: every region."""
    nb = json.loads(text)
    regions = []
    for n, cell in enumerate(nb.get("cells", [])):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if cell.get("cell_type") == "code":
            new, found = student_text(src, f"{path} cell {n}", selected, parts)
            regions += found
            cell["source"] = new.splitlines(keepends=True)
            cell["outputs"], cell["execution_count"] = [], None
        elif _MARKER.search(src):  # (upper case: a heading '### End' is not one)
            raise MarkerError(f"{path} cell {n}: markers are only allowed in code cells")
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n", regions


def fill_text(student, solution, path, parts=None, only=None):
    """The reverse of the student copy: every student region filled with the solution's
    code of the same part and position (markers kept); `only`: just these parts. For checking an assignment end to
    end: a copy filled from the solution must score 100%."""
    sol_lines, stu_lines = solution.split("\n"), student.split("\n")
    mine = find_regions(solution, path, parts)
    theirs = find_regions(student, path, parts, kinds=("YOUR CODE",))
    out, last, used = [], 0, {}
    for s in theirs:
        same = [r for r in mine if r.part == s.part]
        k = used.get(s.part, 0)
        if k >= len(same):
            raise MarkerError(f"{path}:{s.begin + 1}: more regions of part {s.part!r} than the solution has")
        used[s.part] = k + 1
        if only is not None and s.part not in only:
            continue
        out.extend(stu_lines[last:s.begin + 1])
        out.extend(ln for ln in same[k].body(sol_lines) if not _HINT.match(ln))
        last = s.end
    out.extend(stu_lines[last:])
    return "\n".join(out)


# --- lessons: the exercise edition --------------------------------------------------------
# A lesson's written answers are regions of its markdown cells, between two whole-line HTML
# comments (invisible when Jupyter renders the cell):
#
#     <!-- BEGIN ANSWER -->
#     The answer, as the solution edition shows it.
#     <!-- END ANSWER -->
#
# In the exercise edition the text between them becomes ANSWER_PLACEHOLDER.
A_BEGIN, A_END = "<!-- BEGIN ANSWER -->", "<!-- END ANSWER -->"
ANSWER_PLACEHOLDER = "*Your answer here.*"
RAISES = "raises-exception"      # Jupyter's tag for a cell whose error must not stop Run All
_ANSWER = re.compile(r"<!--\s*(BEGIN|END)\s*ANSWER", re.IGNORECASE)


def cell_source(cell):
    """A notebook cell's source as one string (nbformat stores a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def find_answers(text, path):
    """[(begin, end)]: the 0-based line indices of the marker lines of every answer region
    of a markdown text. Unclosed, nested, empty or misspelt ones are a MarkerError."""
    lines = text.split("\n")
    found, open_ = [], None
    for i, line in enumerate(lines):
        if not _ANSWER.search(line):
            continue
        where = f"{path}:{i + 1}"
        if line.strip() == A_BEGIN:
            if open_ is not None:
                raise MarkerError(f"{where}: nested answer: a BEGIN inside the answer opened at "
                                  f"{path}:{open_ + 1}")
            open_ = i
        elif line.strip() == A_END:
            if open_ is None:
                raise MarkerError(f"{where}: '{A_END}' without a '{A_BEGIN}'")
            if not "".join(lines[open_ + 1:i]).strip():
                raise MarkerError(f"{path}:{open_ + 1}: an empty answer (write it between the markers)")
            found.append((open_, i))
            open_ = None
        else:
            raise MarkerError(f"{where}: malformed answer marker {line.strip()!r} (expected "
                              f"'{A_BEGIN}' or '{A_END}' alone on a line)")
    if open_ is not None:
        raise MarkerError(f"{path}:{open_ + 1}: unterminated answer (no '{A_END}')")
    return found


def exercise_notebook(text, path):
    """The exercise edition of a lesson notebook (the repository's lessons are the solution
    edition). Every region of a code cell is an exercise, named by the lesson (lesson
    exercise names are not assignment parts): it becomes the student form, a TODO with its
    hint and `raise NotImplementedError("<name>: ...")`. A region must lie inside a function
    that its cell defines, so that the exercise cell runs and only the check cells that call
    the function fail. Every answer region of a markdown cell keeps its markers around
    ANSWER_PLACEHOLDER. Cells tagged "check" are tagged "raises-exception" too, so that
    Jupyter's Run All goes on past an unfinished exercise's check. Outputs are cleared.
    Returns (new text, regions)."""
    out, regions = student_notebook(text, path, None)
    outside = [r for r in regions if not r.function]
    if outside:
        r = outside[0]
        raise MarkerError(f"{r.path}:{r.begin + 1}: the region of exercise {r.part!r} is not inside a "
                          f"function: in a lesson, the exercise cell defines a function and the check "
                          f"cell calls it (so an unfinished exercise fails in its check cell only)")
    nb = json.loads(out)
    for n, cell in enumerate(nb.get("cells", [])):
        src = cell_source(cell)
        tags = cell.get("metadata", {}).get("tags", [])
        if "check" in tags and RAISES not in tags:
            cell["metadata"]["tags"] = tags + [RAISES]
        if cell.get("cell_type") != "markdown":
            if _ANSWER.search(src):
                raise MarkerError(f"{path} cell {n}: answer markers are only allowed in markdown cells")
            continue
        lines, last, new = src.split("\n"), 0, []
        for begin, end in find_answers(src, f"{path} cell {n}"):
            new += lines[last:begin + 1] + [ANSWER_PLACEHOLDER]
            last = end
        new += lines[last:]
        cell["source"] = "\n".join(new).splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n", regions
