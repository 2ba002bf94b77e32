"""Files only their owner may read: device keys, the broker's CA and server keys."""

from __future__ import annotations

import os


def write_private(path: os.PathLike[str] | str, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 (also when the file existed), durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
