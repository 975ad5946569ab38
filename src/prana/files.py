"""Files that only their owner may read: keys, work files that hold data, job and result files.

Each is created with mode 0600 (set on the descriptor, so whatever the umask, there is no moment in which
another user could open it), and replaces any earlier file of that name. A missing folder is made 0700.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import pandas as pd


@contextmanager
def private_file(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open `path` for writing ("wb" or "w"), readable by this user only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, mode, **({} if "b" in mode else {"newline": ""})) as handle:
        yield handle


def write_private(path: Path | str, data: bytes | str) -> None:
    with private_file(path, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)


def write_private_csv(path: Path | str, frame: pd.DataFrame) -> None:
    with private_file(path, "w") as handle:
        frame.to_csv(handle, index=False)
