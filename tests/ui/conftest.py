"""Browser tests run only when asked for by path: `pytest tests/ui` (make test-ui), not `pytest tests` (make test)."""

from pathlib import Path

HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path, config):
    asked = [Path(str(arg).split("::")[0]).resolve() for arg in config.args]
    if not any(path == HERE or HERE in path.parents for path in asked):
        return True  # leave tests/ui out of a run of the whole suite
    return None
