"""Render the lessons' key figures for browsing online (the committed notebooks carry no
outputs):

    python lessons/render_figures.py                 # every notebook
    python lessons/render_figures.py 05 06           # the notebooks whose names start so

executes each notebook as the test suite does (lessons/nbrun.py) and writes the first PNG
of every code cell tagged "figure" to lessons/figures/<figure_name>.png. Set MINIVIT_DATA
to the real CIFAR-10 (without it the figures show the synthetic stand-in data).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbrun  # noqa: E402


def main(prefixes):
    paths = [p for p in nbrun.notebooks() if not prefixes or p.name.startswith(tuple(prefixes))]
    if not paths:
        sys.exit(f"no lesson notebook starts with {' or '.join(prefixes)}")
    nbrun.FIGURES.mkdir(exist_ok=True)
    with nbrun.data_dir() as data:
        for path in paths:
            nb, seconds = nbrun.execute(path, data)
            for name, png in nbrun.figures(nb).items():
                (nbrun.FIGURES / f"{name}.png").write_bytes(png)
                print(f"{path.name}: figures/{name}.png ({len(png) // 1024} KiB)")
            print(f"{path.name}: ran in {seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
