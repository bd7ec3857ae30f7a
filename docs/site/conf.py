"""Sphinx configuration of the minivit site: the lessons, executed, and the reference of the
ops. Built by `python -m minivit.site build OUT` (docs/site.md), which stages this folder
with the executed notebooks under lessons/; not meant for sphinx-build on its own."""
project = "minivit"
author = "the minivit authors"
copyright = "the minivit authors (MIT licence)"

extensions = [
    "myst_nb",                   # notebooks (as executed, never re-run here) and MyST pages
    "sphinx.ext.autodoc",        # the ops' docstrings
    "sphinx.ext.viewcode",       # [source] links to each op's highlighted code
    "minivit.site.mathml",       # equations as MathML, rendered at build time: no JS, no CDN
    "sphinx.ext.githubpages",    # .nojekyll, so GitHub Pages serves _static/ from a branch too
]
html_math_renderer = "mathml"
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True          # one block per cell for print() output split into chunks

autodoc_member_order = "bysource"
autodoc_typehints = "none"
add_module_names = False

html_theme = "furo"
html_title = "minivit: a Vision Transformer by hand"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_copy_source = False         # the staged notebooks are the outputs, not the sources
html_show_sourcelink = False
exclude_patterns = ["_static"]


def docstring_as_written(app, what, name, obj, options, lines):
    """The ops' docstrings are plain text laid out to be read in the source (equations in
    aligned columns): show them as written, not parsed as reStructuredText; the equations
    rendered as math are on each op's page above its docstrings."""
    if lines:
        lines[:] = [".. code-block:: text", ""] + ["   " + line for line in lines] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", docstring_as_written)
