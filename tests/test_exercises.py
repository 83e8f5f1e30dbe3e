from celebadiff.exercises import check


def test_check_verdicts(capsys):
    assert check(None, lambda a: a > 1, "more") is None
    assert check(2, lambda a: a > 1, "more") is True
    assert check(0, lambda a: a > 1, "more") is False
    assert check("x", lambda a: a > 1, "compare numbers") is False
    out = capsys.readouterr().out
    assert "not attempted" in out and "correct" in out and out.count("Hint") == 2 and "TypeError" in out
