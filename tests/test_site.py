"""The website (python -m minivit.site; docs/site.md): built from the lessons this test run
executed (tests/conftest.py: lesson_runs), then opened in headless Chromium, offline, to see
that every lesson's figures loaded and its equations were rendered.

When the docs extra, Chromium, chromedriver or selenium are missing, the site tests skip on
a developer's machine but fail in CI ($CI set, as .ci/run has it), which installs them all."""
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from minivit import site
from test_lessons import _machine_strings

OPS = Path(site.__file__).resolve().parents[1] / "ops"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,1000"]


def missing(what, how):
    """Skip on a developer's machine; fail in CI, where .ci/run installs everything."""
    message = f"{what} is missing: {how}"
    if IN_CI:
        pytest.fail(f"{message} (CI must run the site tests: see .ci/run)", pytrace=False)
    pytest.skip(message)


def require_docs():
    try:
        site.require()
    except ImportError as e:
        missing("the docs extra", str(e))


# --- math ---------------------------------------------------------------------------------
def test_math_becomes_mathml_core():
    require_docs()
    from minivit.site.mathml import to_mathml
    block = to_mathml(r"\frac{\mathbf x - \mu}{\sqrt{\sigma^2 + \epsilon}}", display=True)
    assert block.startswith('<math display="block">'), block
    assert "<mfrac>" in block and "<msqrt>" in block
    assert "\U0001d431" in block, "\\mathbf x should be the bold letter (MathML Core)"
    assert to_mathml("x_i", display=False).startswith("<math>")
    lines = to_mathml(r"a = b \\ c = d", display=True)
    assert lines.count("<mtr>") == 2, f"two lines should make a two-row table: {lines}"
    with pytest.raises(ValueError, match=r"\\nosuchcommand"):
        to_mathml(r"\nosuchcommand{x}", display=False)


# --- the notebooks as the site shows them ---------------------------------------------------
def executed_cell(text, **extra):
    return {"cell_type": "code", "execution_count": 1, "source": "print(x)",
            "metadata": {"execution": {"iopub.execute_input": "2026-01-01T00:00:00Z"}},
            "outputs": [{"output_type": "stream", "name": "stdout", "text": text}, *extra.get(
                "more", [])]}


def test_clean_removes_timings_and_machine_paths(tmp_path):
    png = {"output_type": "display_data", "metadata": {},
           "data": {"image/png": "iVBOR/tmp/w0KGgo=", "text/plain": f"<Figure {site.ROOT}>"}}
    nb = {"metadata": {"kernelspec": {"name": "python3"}, "minivit": {"data": "synthetic"},
                       "widgets": {}},
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Lesson"},
                    executed_cell(f"{site.ROOT}/minivit/ops/gelu.py:3: Warning\n"
                                  f"read {tmp_path}/cifar-10-python.tar.gz\n", more=[png])]}
    cleaned = site.clean(nb, "01-x.ipynb", data_dir=tmp_path)
    assert set(cleaned["metadata"]) == {"kernelspec"}
    assert cleaned["cells"][1]["source"].startswith("```{note}"), "the synthetic-data note"
    code = cleaned["cells"][2]
    assert code["metadata"] == {}, "execution timings must go"
    assert code["outputs"][0]["text"] == ("<checkout>/minivit/ops/gelu.py:3: Warning\n"
                                          "read $MINIVIT_DATA/cifar-10-python.tar.gz\n")
    assert code["outputs"][1]["data"]["text/plain"] == "<Figure <checkout>>"
    assert code["outputs"][1]["data"]["image/png"] == "iVBOR/tmp/w0KGgo=", "images untouched"
    assert nb["cells"][1]["metadata"], "clean() must not change its argument"
    assert "id" not in cleaned["cells"][1], "cell ids came with nbformat 4.5"
    nb.update(nbformat=4, nbformat_minor=5)
    assert site.clean(nb, "01-x.ipynb")["cells"][1]["id"], "nbformat 4.5: every cell an id"


def test_clean_refuses_a_user_name(monkeypatch):
    monkeypatch.setattr(site, "names_of_this_machine", lambda: ["alice"])
    nb = {"metadata": {}, "cells": [executed_cell("hello alice\n")]}
    with pytest.raises(ValueError, match="alice"):
        site.clean(nb, "01-x.ipynb")


def test_read_executed_wants_every_lesson_executed_from_its_current_code(tmp_path):
    lessons = site.nbrun().notebooks()
    with pytest.raises(FileNotFoundError, match=lessons[0].name):
        site.read_executed(tmp_path)
    for path in lessons:             # copies of the committed notebooks: no outputs
        shutil.copy(path, tmp_path / path.name)
    with pytest.raises(ValueError, match="no outputs"):
        site.read_executed(tmp_path)
    for path in lessons:             # as nbrun.Executions keeps them: sources as strings
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            cell["source"] = "".join(cell["source"])
            if cell["cell_type"] == "code":
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
        (tmp_path / path.name).write_text(json.dumps(nb), encoding="utf-8")
    assert sorted(site.read_executed(tmp_path)) == [p.name for p in lessons]
    nb = json.loads(lessons[0].read_text(encoding="utf-8"))
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["source"] = "print('an older version')"
    (tmp_path / lessons[0].name).write_text(json.dumps(nb), encoding="utf-8")
    with pytest.raises(ValueError, match="other code"):
        site.read_executed(tmp_path)


def test_build_keeps_a_folder_that_is_not_a_site(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a site"):
        site.prepare_out(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- the reference of the ops -------------------------------------------------------------
def test_every_op_has_a_reference_page():
    pages = site.SOURCE / "ops"
    toctree = (pages / "index.md").read_text(encoding="utf-8")
    listed = re.search(r"```\{toctree\}\n(?::.*\n)*\n((?:.+\n)+)```", toctree).group(1).split()
    modules = sorted(p.stem for p in OPS.glob("*.py") if p.stem != "__init__")
    lacking = [m for m in modules if not (pages / f"{m}.md").is_file()]
    assert not lacking, (f"ops without a reference page: {lacking}; write docs/site/ops/NAME.md "
                         "(its equations in $$ math, then its automodule, as gelu.md does)")
    assert sorted(listed) == modules, f"docs/site/ops/index.md's toctree {listed} != {modules}"
    for m in modules:
        page = (pages / f"{m}.md").read_text(encoding="utf-8")
        assert f".. automodule:: minivit.ops.{m}\n" in page, f"ops/{m}.md lacks its automodule"


# --- the site, built and opened in a browser ----------------------------------------------
@pytest.fixture(scope="module")
def built_site(lesson_runs, lesson_data, tmp_path_factory):
    """The site built (strict: a Sphinx warning fails) from the lessons as executed by this
    run; lessons the lesson test did not execute yet are executed here."""
    require_docs()
    for path in site.nbrun().notebooks():
        lesson_runs.run(path)
    out = tmp_path_factory.mktemp("site")
    site.build(out, lesson_runs.folder, strict=True, data_dir=lesson_data)
    return out


def chromium():
    """A selenium Chrome driver on the system's Chromium and chromedriver (no downloads)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium", 'pip install -e ".[test]"')
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser"])), None)
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        missing("Chromium or chromedriver", "apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="minivit-chromium-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=driver)), profile


@pytest.fixture(scope="module")
def browser():
    driver, profile = chromium()
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


PAGE_REPORT = """
const outputs = [...document.querySelectorAll('.cell_output img')];
const maths = [...document.querySelectorAll('math')];
return {
  title: document.title,
  images: outputs.length,
  images_loaded: outputs.filter(i => i.complete && i.naturalWidth > 0).length,
  maths: maths.length,
  maths_rendered: maths.filter(m => m instanceof MathMLElement
                                    && m.getBoundingClientRect().width > 0).length,
  math_failures: document.querySelectorAll('code.math-source').length,
  // TeX left as text in the prose (code cells may hold $ signs, e.g. matplotlib labels)
  raw_tex: [...document.querySelectorAll('article p, article li, article td, article h1, article h2')]
           .map(e => e.innerText).join('\\n').match(/\\$[^$\\n]*\\\\[a-z]+/g) || [],
};
"""


def image_outputs(nb):
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.slow
def test_lessons_show_their_figures_and_equations_in_a_browser(built_site, lesson_runs, browser):
    for path in site.nbrun().notebooks():
        nb, _ = lesson_runs.run(path)
        page = built_site / "lessons" / f"{path.stem}.html"
        assert page.is_file(), f"the site has no page for {path.name}"
        browser.get(page.as_uri())
        seen = browser.execute_script(PAGE_REPORT)
        where = f"{path.name} ({seen['title']})"
        assert seen["images"] == image_outputs(nb), (
            f"{where}: {seen['images']} figures on the page, {image_outputs(nb)} in the notebook")
        assert seen["images_loaded"] == seen["images"], (
            f"{where}: only {seen['images_loaded']} of {seen['images']} figures loaded")
        assert seen["maths"] > 0, f"{where}: no rendered equation on the page"
        assert seen["maths_rendered"] == seen["maths"], (
            f"{where}: {seen['maths'] - seen['maths_rendered']} of {seen['maths']} equations "
            "are not drawn as MathML")
        assert not seen["math_failures"] and not seen["raw_tex"], (
            f"{where}: TeX left unrendered: {seen['raw_tex']}")


@pytest.mark.slow
def test_ops_reference_shows_equations_and_docstrings(built_site, browser):
    browser.get((built_site / "ops" / "layernorm.html").as_uri())
    seen = browser.execute_script(PAGE_REPORT)
    assert seen["maths"] >= 2 and seen["maths_rendered"] == seen["maths"], seen
    text = browser.execute_script("return document.querySelector('article').innerText")
    assert "layernorm_forward" in text and "layernorm_backward" in text
    assert "dx = rstd * (g - mean(g) - xhat * mean(g * xhat))" in text, \
        "the docstring should be shown as written in the source"


REMOTE_RESOURCE = re.compile(r'<(?:script|link|img|iframe|source|video|audio)\b[^>]*?'
                             r'\b(?:src|href)="((?:https?:)?//[^"]+)"')


@pytest.mark.slow
def test_site_is_offline_and_names_no_machine(built_site):
    """Nothing is fetched from the internet (scripts, styles, images, fonts: links to other
    sites are fine), and no page carries a path or name of the machine that built it."""
    problems = []
    for page in sorted(built_site.rglob("*.html")) + sorted(built_site.rglob("*.css")):
        text = page.read_text(encoding="utf-8")
        remote = REMOTE_RESOURCE.findall(text) + re.findall(r"url\(['\"]?(?:https?:)?//", text)
        found = [s for s in _machine_strings() if s in text]
        if remote or found:
            problems.append(f"{page.relative_to(built_site)}: fetches {remote[:3]}, names {found}")
    assert not problems, "\n".join(problems)
