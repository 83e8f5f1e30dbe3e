"""Writing files atomically: through a temporary file beside the target and a rename.

An interrupted write (a crash, Ctrl-C, a full disk) leaves the old file, or none, never half a file;
`os.replace` is atomic on POSIX and Windows when both names are on one file system, which a
temporary file in the target's own folder guarantees. Every file the project writes for a reader to
load again (checkpoints, classifiers, cached splits, edited photos, scorecards) goes through here.
"""

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path):
    """Yield a temporary path beside `path` to write to; on success it is renamed onto `path`.

    The temporary name is hidden and carries the process id (several processes may build one file at
    once; the last rename wins, and each is whole). On an error the temporary file is removed and `path`
    is left as it was. The file gets mode 0o644 (readable by all), whatever the writer created it with.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text):
    """Write `text` to `path` atomically (`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)
