"""python -m minivit.lessons exercises DIR: write the lessons' exercise edition to DIR."""
import argparse
import sys

from ..assignment.markers import MarkerError
from .edition import write_exercises


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m minivit.lessons",
                                 description="The lessons' exercise edition (minivit/lessons/__init__.py).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("exercises", help="write the exercise edition of every lesson to DIR")
    ex.add_argument("dir", help="a new or empty folder")
    args = ap.parse_args(argv)
    try:
        written = write_exercises(args.dir)
    except (MarkerError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote the exercise edition of {sum(p.suffix == '.ipynb' for p in written)} lessons to "
          f"{args.dir}: open it with  jupyter lab {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
