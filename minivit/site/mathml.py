"""A Sphinx math renderer that writes MathML Core at build time (math-core converts the TeX).

Every current browser draws MathML Core natively, so the pages need no JavaScript and no
CDN: equations show when the site is opened from a folder, offline. A formula the converter
cannot read is a Sphinx warning at its place in the source (an error in the site's test),
and the page shows its TeX source instead.

Use: extensions = [..., "minivit.site.mathml"] and html_math_renderer = "mathml".
"""
import html

from docutils import nodes
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)
_converter = None


def to_mathml(tex, display):
    """TeX (what goes between $ signs) -> a <math> element; ValueError if it cannot be read.
    Display math with line breaks (\\\\) outside an environment is set as `aligned` (or
    `gathered` when it has no & columns), as MathJax does with Sphinx's `split`."""
    global _converter
    if _converter is None:
        from math_core import LatexToMathML
        _converter = LatexToMathML(fancy_error=False)
    if display and "\\\\" in tex and "\\begin" not in tex:
        env = "aligned" if "&" in tex else "gathered"
        tex = f"\\begin{{{env}}}{tex}\\end{{{env}}}"
    try:
        return _converter.convert_with_local_state(tex, displaystyle=display)
    except Exception as e:       # math-core raises its own LatexError
        raise ValueError(f"{str(e).strip()} in: {tex}") from None


def _render(node, tex, display):
    try:
        return to_mathml(tex, display)
    except ValueError as e:
        logger.warning("cannot render this math as MathML: %s", e, location=node)
        return f'<code class="math-source">{html.escape(tex)}</code>'


def visit_math(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_render(node, node.astext(), display=False) + "</span>")
    raise nodes.SkipNode


def visit_displaymath(self, node):
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        self.body.append(f'<span class="eqno">({get_node_equation_number(self, node)})')
        self.add_permalink_ref(node, "Link to this equation")
        self.body.append("</span>")
    # blank lines separate equations, as in Sphinx's other renderers
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        self.body.append(_render(node, part, display=True))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
