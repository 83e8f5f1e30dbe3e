"""Checks for the notebooks' exercises: a verdict and a hint, never an exception.

Two kinds of exercise, one convention: print "not attempted yet", "correct" or "not yet" with a hint,
and return None, True or False.

- *Read a number*: the exercise cell leaves `answer_k = None`; the check cell calls `check`.
- *Write the code*: the exercise cell holds a stub that raises NotImplementedError; the check cell
  passes the function to a `check_*` of the notebook's module (`nb02_forward.check_q_sample`, ...),
  which calls it on fresh random inputs (`check_function`) and compares the result with the
  library's own implementation or an exact property. A value copied from an earlier run cannot pass:
  every call draws new inputs.

Run headless (papermill, nbval) the unanswered exercises print "not attempted" and the collapsed
solution cells set the answer or define the function, so every check is exercised on every run.
The toy model here (`toy_model`) stands in for the U-Net wherever a check needs one.
"""

import torch

TOLERANCE = 1e-4  # relative (to 1 + |expected|): float32 arithmetic passes, a wrong formula does not


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


def check_function(fn, make_case, hint, reference, trials=3, seed=None, tolerance=TOLERANCE):
    """Call a student's function on `trials` fresh random cases and compare it with a reference.

    Args:
        fn: the student's function.
        make_case: callable(generator) -> (args, expected): the arguments of one call (a tuple) and what
            the reference returns for them (a tensor, number, string, or a tuple of those).
        hint: what to look at again when the output differs.
        reference: what the check compares with, in words (e.g. "celebadiff.diffusion.q_sample").
        seed: None draws a fresh seed on every call (the notebooks); tests pass one.
        tolerance: relative error allowed on float outputs (to 1 + |expected|).
    Returns:
        True (every case agrees), False (a difference or an error), None (the stub: not attempted).
    """
    if not callable(fn):
        print("not attempted yet: define the function in the cell above, then run this cell")
        return None
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    for trial in range(trials):
        args, expected = make_case(g)
        try:
            got = fn(*[x.clone() if torch.is_tensor(x) else x for x in args])  # its own copies: it may write
        except NotImplementedError:
            print("not attempted yet: replace `raise NotImplementedError` in the cell above with your code, "
                  "run it, then run this cell")
            return None
        except Exception as error:  # a student's bug is a hint, not a traceback
            print(f"not yet: calling it raised {type(error).__name__}: {error}. Hint: {hint}")
            return False
        problem = difference(got, expected, tolerance)
        if problem:
            print(f"not yet: on random case {trial + 1} of {trials}, {problem}. Hint: {hint}")
            return False
    print(f"correct: agrees with {reference} on {trials} random cases")
    return True


def difference(got, expected, tolerance=TOLERANCE, name="the output"):
    """What differs between a returned value and the expected one, in words; None when they agree."""
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{name} should be a tuple of {len(expected)} values, got {type(got).__name__}"
        for k, (a, b) in enumerate(zip(got, expected)):
            problem = difference(a, b, tolerance, f"value {k + 1} of the tuple")
            if problem:
                return problem
        return None
    if isinstance(expected, str):
        return None if got == expected else f"{name} is {got!r}, expected a different string"
    try:
        got = torch.as_tensor(got)
    except (TypeError, ValueError, RuntimeError):
        return f"{name} is a {type(got).__name__}, expected a tensor or a number"
    expected = torch.as_tensor(expected)
    if got.shape != expected.shape:
        return f"{name} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not expected.is_floating_point():
        if got.dtype != expected.dtype:
            return f"{name} has dtype {got.dtype}, expected {expected.dtype}"
        wrong = got != expected
        return f"{name} differs in {int(wrong.sum())} of {wrong.numel()} entries" if wrong.any() else None
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.isfinite(got).all():
        return f"{name} holds {int((~torch.isfinite(got)).sum())} inf or nan values"
    error = (got - expected).abs() / (1 + expected.abs())
    if error.max() <= tolerance:
        return None
    i = int(error.flatten().argmax())
    return (f"{name} differs: {float(got.flatten()[i]):.4g} where {float(expected.flatten()[i]):.4g} was expected "
            f"({int((error > tolerance).sum())} of {error.numel()} entries off)")


def toy_model(n_attributes, generator, dtype=torch.float64):
    """An analytic noise predictor (x_t, t, y) -> eps_hat in which every attribute state counts.

    Each attribute state (ABSENT, PRESENT, UNKNOWN) gets a random gain and offset; their sums shape a
    smooth nonlinear function of x_t and t, so changing one state of y changes eps_hat everywhere,
    by a different amount at each pixel. It stands in for the U-Net where a check needs a model.
    """
    gain, offset = 0.3 * torch.randn(2, n_attributes, 3, generator=generator, dtype=dtype)
    rows = torch.arange(n_attributes)

    def model(x_t, t, y):
        a = gain.to(x_t)[rows, y].sum(1).reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        b = offset.to(x_t)[rows, y].sum(1).reshape(-1, 1, 1, 1)
        tt = t.to(x_t).reshape(-1, 1, 1, 1) / 1000
        return torch.tanh((1 + a) * x_t + b * x_t.roll(1, -1) + tt)
    return model


def random_states(shape, generator, unknown=True):
    """Random attribute states (B, A) long: ABSENT, PRESENT and, if `unknown`, UNKNOWN."""
    return torch.randint(0, 3 if unknown else 2, shape, generator=generator)
