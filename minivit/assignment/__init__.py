"""Course assignments made from this package's own source (INSTRUCTORS.md).

The library files mark the bodies students write with nbgrader-style comments,

    ### BEGIN SOLUTION <part>
    ### HINT: <one line for the student>
    ...the solution, working code...
    ### END SOLUTION

grouped into named parts (minivit/assignment/parts.py). Three commands:

    python -m minivit.assignment make OUT_DIR [--parts linear softmax ...]   # the student copy
    python -m minivit.assignment grade STUDENT_DIR [--out results.json]      # part by part
    python -m minivit.assignment gradescope OUT.zip                          # the autograder

Public checks (minivit/assignment/public.py) go to the students with their copy; the
hidden ones (hidden.py) and the grader stay with the instructor.
"""
