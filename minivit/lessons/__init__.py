'''Tools for the lesson notebooks (lessons/*.ipynb), and how a lesson's exercises are written.

A lesson's setup cell:

    from minivit.lessons import check, checkpoint_path, load_images, show_source

    x, y, classes = load_images(200)   # the first 200 CIFAR-10 training images (split="test":
                                       # test images), without loading the other 50,000
    checkpoint_path()                  # the lessons' trained ViT, for load_checkpoint
    show_source(ops.softmax_forward)   # a function's source, without the exercise markers
    check                              # the check cells' comparisons (check.py)

They find the data and the checkpoint through the library ($MINIVIT_DATA or the cache dir;
$MINIVIT_LESSONS_CHECKPOINT or lessons/checkpoints/ beside the package), never through the
working directory: a notebook runs wherever it is opened from.

Two editions
------------
The notebooks in lessons/ are the *solution edition*: CI runs them top to bottom with the
solutions in place. The *exercise edition* is written by

    python -m minivit.lessons exercises DIR        # (the assignment's `make` ships the same)

(edition.py, through minivit/assignment/markers.py: one parser for all regions).

Writing an exercise (for lesson authors)
----------------------------------------
1. **The exercise cell** (tag `exercise`) only *defines* a function. The code the learner
   writes is a region inside it, between the library's marker lines (see lesson 01's
   exercise cells): `### BEGIN SOLUTION <name>`, then a required `### HINT: <one line>`,
   the solution, and `### END SOLUTION`. The name is the exercise's own, not an assignment
   part. (This docstring never starts a line with a marker: minivit/assignment/make.py
   reads every line of the package that does as a region of the assignment.)

   In the exercise edition the region becomes the student form of the assignment's copy
   (a TODO with the hint and `raise NotImplementedError("<name>: ...")` between the student's
   marker lines): the function raises when it is *called*, so the exercise cell still runs.
   A region outside a function is an error. Don't show the library's version (show_source)
   before the check cell: show it after, as "the library's version".
2. **The check cell** (tag `check`), right after, calls the function on one or more cases
   and compares with the library or with numbers computed another way:

       with check.exercise("patchify"):
           for P in (4, 8):
               check.exact(f"patches, P={P}", patchify(x, P), ops.patchify_forward(x, P)[0])

   check.exact / check.close / check.rel_error print one line per tensor (exact, close, max
   difference and where) and the block fails naming the cases that failed; while the
   exercise is untouched it fails with one line: "exercise patchify is not done yet: fill in
   the cell above". One check cell per exercise, naming it. In the exercise edition a check
   cell stops at its first call, so it draws from a random generator of its own and
   assigns no name a later cell uses (loop variables included): later cells then compute
   the same whether or not the exercise is done.
3. **No later cell uses the learner's function or what it returned**: they use the library,
   so an unfinished exercise costs its check cell only.
4. **Questions and "predict before you run"** are markdown cells tagged `question`; the
   answer sits between two whole-line HTML comments (Jupyter does not render them):

       **Predict before you run.** Halving P multiplies the attention cost by ...?

       <!-- BEGIN ANSWER -->
       About 16: ...
       <!-- END ANSWER -->

   The exercise edition keeps the two markers around "*Your answer here.*". A prediction's
   prompt goes before the cell that measures it, its answer may quote the measurement.
5. Tags (cell metadata "tags"): `exercise`, `check`, `question`, `figure` (with its
   "figure_name"). tests/test_lessons.py allows no other metadata. The exercise edition
   adds Jupyter's `raises-exception` to the check cells, so Run All goes past them.

Testing: `python -m pytest tests/test_lessons.py` runs every notebook (a) as it is: no cell
may fail; (b) its exercise edition, from another folder: every check cell must fail with
"not done yet" (each exercise checked by one) and no other cell may fail; and (c) checks
that putting the solutions back into the exercise edition gives the notebook again. Keep
each notebook well under two minutes: the suite runs both editions.
'''
from . import check
from .tools import Images, checkpoint_path, load_images, show_source

__all__ = ["Images", "check", "checkpoint_path", "load_images", "show_source"]
