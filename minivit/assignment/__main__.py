"""python -m minivit.assignment {make,grade,gradescope} ... (see INSTRUCTORS.md)"""
import argparse
import sys

from .parts import ORDER, PARTS


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m minivit.assignment",
                                 description="Course assignments from minivit's own source (INSTRUCTORS.md).")
    sub = ap.add_subparsers(dest="cmd", required=True)
    parts_help = "parts to include (default: all): " + ", ".join(f"{p} ({PARTS[p][0]})" for p in ORDER)

    mk = sub.add_parser("make", help="write the student copy")
    mk.add_argument("out_dir")
    mk.add_argument("--parts", nargs="+", help=parts_help)

    gr = sub.add_parser("grade", help="grade a submission part by part; writes results.json")
    gr.add_argument("submission", help="the student's folder (a copy, its minivit folder, loose files) or a .zip")
    gr.add_argument("--out", default="results.json", help="where to write the results (default: %(default)s)")
    gr.add_argument("--parts", nargs="+", help="parts to grade (default: the copy's assignment.json, else all)")
    gr.add_argument("--time-limit", type=float, default=None, help="seconds per part (default: 60)")
    gr.add_argument("--memory-mb", type=int, default=None, help="address space per part, MB (default: 1024)")
    gr.add_argument("--total-time", type=float, default=None,
                    help="seconds for the whole grading: parts not started by then score 0 (default: none)")
    gr.add_argument("--isolation", choices=("auto", "user"), default="auto",
                    help="as root: 'auto' uses namespaces where unshare works, 'user' only a fresh "
                         "unprivileged user (what Gradescope's containers allow)")
    gr.add_argument("--jobs", type=int, default=1, help="parts graded at once (default: 1)")

    gs = sub.add_parser("gradescope", help="write the Gradescope autograder zip")
    gs.add_argument("out_zip")
    gs.add_argument("--parts", nargs="+", help=parts_help)
    gs.add_argument("--time-limit", type=int, default=None,
                    help="seconds per part (default: the total time shared among the parts, at most 60)")
    gs.add_argument("--memory-mb", type=int, default=512, help="address space per part, MB (default: %(default)s)")
    gs.add_argument("--total-time", type=int, default=540,
                    help="seconds for a whole grading, under Gradescope's 10 minutes (default: %(default)s)")

    args = ap.parse_args(argv)
    if args.cmd == "make":
        from .make import make
        from .markers import MarkerError
        try:
            r = make(args.out_dir, args.parts)
        except (MarkerError, ValueError, FileExistsError, RuntimeError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"wrote the student copy of part(s) {', '.join(r['parts'])} to {args.out_dir} "
              f"({len(r['files'])} files)")
        return 0
    if args.cmd == "grade":
        from . import grader
        grader.grade(args.submission, args.parts, args.out,
                     args.time_limit if args.time_limit is not None else grader.TIME_LIMIT,
                     args.memory_mb if args.memory_mb is not None else grader.MEMORY_MB, args.jobs,
                     args.total_time, args.isolation)
        print(f"results: {args.out}")
        return 0
    from .gradescope import build
    from .markers import MarkerError
    try:
        names = build(args.out_zip, args.parts, args.time_limit, args.memory_mb, args.total_time)
    except (MarkerError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_zip} ({len(names)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
