"""Checks for the notebooks' exercises: a verdict and a hint, never an exception.

Each exercise cell leaves its answer as None; the check cell after it calls `check`. Run headless
(papermill, nbval) the unanswered exercises print "not attempted" and the collapsed solution cells
set the answer, so every check is exercised on every run.
"""


def check(answer, test, hint):
    """Print whether an exercise's answer holds; returns True, False, or None when not attempted.

    Args:
        answer: the student's value (None: not attempted yet).
        test: callable(answer) -> bool, True when the answer holds.
        hint: what to look at again when it does not.
    """
    if answer is None:
        print("not attempted yet: set the answer in the cell above, then run this cell")
        return None
    try:
        ok = bool(test(answer))
    except Exception as error:  # a student's answer of the wrong kind is a hint, not a traceback
        print(f"not yet: {type(error).__name__}: {error}. Hint: {hint}")
        return False
    print("correct" if ok else f"not yet. Hint: {hint}")
    return ok
