"""A full disk inside a trace's committer process, for tests/test_disk_faults.py.

The committer is a child process, which a test's monkeypatching does not reach: the test puts
this directory on PYTHONPATH, so the child imports this module at start-up. While the file
named by EVENTSRC_TEST_DISK_FULL exists, the child's writes to files under the directory that
file names raise ENOSPC, as a full disk's would. Nothing happens without the variable.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_FLAG = os.environ.get("EVENTSRC_TEST_DISK_FULL")

if _FLAG:
    _flag = _FLAG
    _write = os.write

    def _full_write(fd: int, data: ReadableBuffer, /) -> int:
        try:
            with open(_flag) as f:
                under = f.read().strip()
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return _write(fd, data)
        if under and (where == under or where.startswith(under + os.sep)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _write(fd, data)

    os.write = _full_write
