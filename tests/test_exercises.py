"""The exercises' checks: the reference solutions pass, and the stub, plausible wrong answers and
guesses (a constant, or a value replayed from an earlier run) all fail, with a hint."""

import pytest
import torch
from exercise_solutions import EXERCISES

from celebadiff.exercises import check, check_function, difference
from celebadiff.exercises.nb06_editing import inversion_step
from celebadiff.sampling import ddim_step, guided

SEEDS = (0, 1, 2, 3)
IDS = [f"{e.notebook}-{e.check.__name__.removeprefix('check_')}" for e in EXERCISES]


def test_check_verdicts(capsys):
    assert check(None, lambda a: a > 1, "more") is None
    assert check(2, lambda a: a > 1, "more") is True
    assert check(0, lambda a: a > 1, "more") is False
    assert check("x", lambda a: a > 1, "compare numbers") is False
    out = capsys.readouterr().out
    assert "not attempted" in out and "correct" in out and out.count("Hint") == 2 and "TypeError" in out


def test_every_notebook_has_two_exercises():
    counts = {f"{n:02d}": sum(e.notebook == f"{n:02d}" for e in EXERCISES) for n in range(1, 10)}
    assert min(counts.values()) >= 2, counts


def _stub(*args):
    raise NotImplementedError


def _zeros_like(value):
    """A constant of the right shape and type: what a student who guesses the form but not the values returns."""
    if isinstance(value, (tuple, list)):
        return tuple(_zeros_like(v) for v in value)
    if isinstance(value, str):
        return value
    return torch.zeros_like(torch.as_tensor(value))


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_reference_solution_passes(exercise, capsys):
    for seed in SEEDS:
        assert exercise.check(exercise.solution, seed=seed) is True, capsys.readouterr().out
    assert exercise.check(exercise.solution) is True  # a fresh seed, as in the notebook
    assert "correct: agrees with" in capsys.readouterr().out


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_stub_is_not_attempted(exercise, capsys):
    assert exercise.check(_stub, seed=0) is None
    assert exercise.check(None, seed=0) is None
    assert capsys.readouterr().out.count("not attempted yet") == 2


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_wrong_answers_fail_with_a_hint(exercise, capsys):
    assert exercise.wrong, "every exercise has at least one plausible wrong answer"
    for wrong in exercise.wrong:
        for seed in SEEDS:
            assert exercise.check(wrong, seed=seed) is False, f"{wrong.__name__} passed with seed {seed}"
            out = capsys.readouterr().out
            assert out.startswith("not yet") and "Hint:" in out, out


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_guesses_fail(exercise, capsys):
    seen = []

    def recording(*args):
        seen.append(exercise.solution(*args))
        return seen[-1]

    assert exercise.check(recording, seed=0) is True
    first = seen[0]
    assert exercise.check(lambda *args: first, seed=0) is False  # replayed: the next case differs
    assert exercise.check(lambda *args: first, seed=1) is False
    assert exercise.check(lambda *args: _zeros_like(first), seed=0) is False
    capsys.readouterr()


def test_a_student_error_is_a_hint_not_a_traceback(capsys):
    def broken(*args):
        return args[99]

    assert check_function(broken, lambda g: ((1,), torch.ones(1)), "look again", "ones") is False
    out = capsys.readouterr().out
    assert "IndexError" in out and "Hint: look again" in out


def test_difference_names_what_differs():
    expected = torch.zeros(2, 3)
    assert difference(torch.zeros(2, 3) + 1e-7, expected) is None
    assert "shape (3, 2)" in difference(torch.zeros(3, 2), expected)
    assert "2 of 6 entries off" in difference(torch.tensor([[0, 0, 1.0], [0, 0, 1]]), expected)
    assert "nan" in difference(torch.full((2, 3), float("nan")), expected)
    assert "dtype" in difference(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    assert "tuple of 2" in difference(torch.zeros(1), (expected, expected))
    assert difference("a.jpg", "a.jpg") is None and "string" in difference("b.jpg", "a.jpg")


def test_inversion_reference_undoes_the_librarys_ddim_step():
    from celebadiff.diffusion import NoiseSchedule

    schedule = NoiseSchedule.linear(100)
    x_s, eps = torch.randn(2, 2, 3, 4, 4, dtype=torch.float64)
    for s, t in ((-1, 40), (10, 90)):
        x_t = inversion_step(schedule, x_s, eps, s, t)
        torch.testing.assert_close(ddim_step(schedule, x_t, eps, t, s), x_s)


def test_region_reference_is_the_edit_with_one_full_region():
    from celebadiff.exercises import random_states, toy_model
    from celebadiff.exercises.nb06_editing import region_eps

    g = torch.Generator().manual_seed(0)
    model, x_t = toy_model(3, g), torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    t, (y, y_k) = torch.tensor([5, 500]), random_states((2, 2, 3), g, unknown=False)
    everywhere = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(region_eps(model, x_t, t, y, [y_k], [1.5], [everywhere]),
                               guided(model, target=y_k, target_w=1.5)(x_t, t, y))
