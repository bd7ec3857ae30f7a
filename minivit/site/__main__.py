"""python -m minivit.site build OUT [--executed DIR] [--no-strict]: see minivit/site/__init__.py
and docs/site.md."""
import argparse
import sys

from . import main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m minivit.site",
        description="Build the minivit website (the lessons as executed, the reference of the "
                    "ops) into a static folder that opens offline. Run from a checkout with "
                    "the docs extra installed (pip install -e \".[docs]\"); docs/site.md.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the site into OUT (its index.html opens it)")
    b.add_argument("out", metavar="OUT",
                   help="a new or empty folder, or a site built there before (replaced)")
    b.add_argument("--executed", metavar="DIR",
                   help="build from the lessons executed into DIR before (e.g. by the tests, "
                        "with MINIVIT_EXECUTED_NOTEBOOKS=DIR) instead of executing them now; "
                        "the lessons run on $MINIVIT_DATA when set, else on synthetic data")
    b.add_argument("--no-strict", dest="strict", action="store_false",
                   help="build even when Sphinx warns (a formula that cannot be rendered, a "
                        "broken reference); by default a warning fails the build")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    try:
        main(args.out, executed=args.executed, strict=args.strict)
    except (ImportError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
