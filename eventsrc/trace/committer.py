"""The committer: a child process that seals complete write-ahead segments into the Zarr body.

Why a process: sealing a unit (32768 events) compresses and checksums ~20 MB and makes some 60
file system calls. In a thread, every one of those calls gives up the GIL and must win it back
from the appending thread, which holds it for up to the 5 ms switch interval each time: measured
here, a unit then took 180-300 ms instead of ~90 ms, and the appender stalled on the backlog. In
its own process the committer shares nothing with the appender but the files.

Protocol, one line per message. The writer sends a unit's index on the child's stdin once that
unit's segment is complete on disk; the child reads the segment, writes the unit to every
column (body.py), records the new committed length and code tables in the commit marker, deletes
the segments now wholly in the body, and answers ``done <index>`` on stdout. On any failure it
answers ``fail <message>`` and exits. It exits when stdin closes (the writer closed, or died).

The child inherits the writer's lock (the same open file description), so no second writer can
open the trace while a committer of the first still runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from eventsrc.errors import TraceCorrupted, TraceError
from eventsrc.trace.body import BodyReader, BodyWriter
from eventsrc.trace.files import fsync_dir
from eventsrc.trace.marker import read_meta, write_meta
from eventsrc.trace.record import LENGTH_SIZE, written_seq
from eventsrc.trace.segment import list_segments, scan_segment, segment_name
from eventsrc.trace.tables import CodeTables

_LENGTH = struct.Struct("<I")
assert _LENGTH.size == LENGTH_SIZE

_CHILD = """
import importlib.util, sys
# The child needs only the files it writes, not the engine: register the packages without
# running their __init__ (which import all of eventsrc), so it starts in ~0.13 s, not ~0.2.
for name in ("eventsrc", "eventsrc.trace"):
    spec = importlib.util.find_spec(name)
    sys.modules[name] = importlib.util.module_from_spec(spec)
from eventsrc.trace.committer import main
sys.exit(main(sys.argv[1:], sys.stdin, sys.stdout))
"""


class Committer:
    """The writer's handle on its committer process, started at the first unit to seal."""

    def __init__(
        self,
        root: Path,
        lock_fd: int,
        on_done: Callable[[int], None],
        on_fail: Callable[[BaseException], None],
    ) -> None:
        self.root = root
        self._lock_fd = lock_fd
        self._on_done = on_done
        self._on_fail = on_fail
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()

    def submit(self, index: int) -> None:
        """Seal unit ``index``; its segment must be complete on disk."""
        with self._send_lock:
            if self._proc is None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(f"{index}\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                self._on_fail(TraceError(f"the committer of {self.root} is gone ({exc})"))

    def _start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            pass_fds=(self._lock_fd,),
        )
        self._reader = threading.Thread(
            target=self._read_answers, name=f"eventsrc-committer:{self.root.name}", daemon=True
        )
        self._reader.start()

    def _read_answers(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "done":
                self._on_done(int(rest))
            else:
                self._on_fail(TraceError(f"committing the body of {self.root} failed: {rest}"))
                return
        code = proc.wait()
        if code != 0:
            self._on_fail(TraceError(f"the committer of {self.root} exited with status {code}"))

    def close(self) -> None:
        """Let the committer finish what it was given, and wait for it."""
        with self._send_lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait()
        if self._reader is not None:
            self._reader.join()


# ---------------------------------------------------------------------------------------------
# The child


def unit_records(
    root: Path, meta: dict[str, Any], index: int
) -> tuple[list[bytes], CodeTables, Path]:
    """The written records of unit ``index`` as far as they go, with the code tables that
    decode them: those the body holds already (a partial unit sealed when the trace was last
    closed) from the body, which is their truth, the rest from the unit's segment."""
    unit, committed = int(meta["unit"]), int(meta["committed"])
    start = index * unit
    path = root / "wal" / segment_name(start)
    scan = scan_segment(path, skip_below=committed)
    tables = CodeTables.from_marker(meta, f"trace {root}")
    for definition in scan.definitions:
        tables.learn(definition, str(path))
    records: list[bytes] = []
    if committed > start:
        held = BodyReader(root, int(meta["record_chunk"])).records(start, committed)
        records = [_LENGTH.pack(len(item)) + item for item in held]
    records += [r for r in scan.records if written_seq(r) >= start + len(records)]
    return records, tables, path


def seal(root: Path, index: int, meta: dict[str, Any], body: BodyWriter) -> dict[str, Any]:
    """Seal unit ``index`` from its segment; returns the new commit marker (already written)."""
    unit = int(meta["unit"])
    records, tables, path = unit_records(root, meta, index)
    if len(records) < unit:
        raise TraceCorrupted(
            f"{path}: unit {index} was handed over with {len(records)} of {unit} events"
        )
    body.write_unit(index, records[:unit])
    # The segment after the unit must exist before the marker points at it (recovery.py); the
    # writer created it, durably unless its durability is "none": make its entry durable here.
    if not (root / "wal" / segment_name((index + 1) * unit)).exists():
        raise TraceCorrupted(f"{path}: the segment that follows unit {index} is missing")
    fsync_dir(root / "wal")
    meta.update(tables.to_marker())
    meta["committed"] = (index + 1) * unit
    write_meta(root, meta)
    for start, old in list_segments(root / "wal"):
        if start + unit <= meta["committed"]:
            old.unlink(missing_ok=True)
    return meta


def seal_tail(root: Path, end: int) -> int:
    """Seal the last, partial unit of a trace that holds ``end`` events, from its segment,
    into the body (closing a trace does it, once the committer has sealed every whole unit);
    returns the new committed length. Chunk files first, then the marker: a crash or a full
    disk between them leaves the marker as it was, and the segment, which stays until the
    unit is complete, still holds every event. Only the lock's holder may call it."""
    meta = read_meta(root)
    unit, committed = int(meta["unit"]), int(meta["committed"])
    if end <= committed:
        return committed
    index = committed // unit
    if end > (index + 1) * unit:
        raise TraceError(f"trace {root}: units before event {end} are not sealed yet")
    records, tables, path = unit_records(root, meta, index)
    if len(records) < end - index * unit:
        raise TraceCorrupted(
            f"{path}: holds {len(records)} events, not the {end - index * unit} to seal"
        )
    body = BodyWriter(root, unit, int(meta["record_chunk"]))
    body.write_unit(index, records[: end - index * unit])
    meta.update(tables.to_marker())
    meta["committed"] = end
    write_meta(root, meta)
    return end


def main(argv: list[str], stdin: TextIO, stdout: TextIO) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer decides when we stop
    root = Path(argv[0])
    try:
        meta = read_meta(root)
        body = BodyWriter(root, int(meta["unit"]), int(meta["record_chunk"]))
        for line in stdin:
            index = int(line)
            if (index + 1) * int(meta["unit"]) <= int(meta["committed"]):
                stdout.write(f"done {index}\n")  # already sealed (a retry after recovery)
            else:
                meta = seal(root, index, meta, body)
                stdout.write(f"done {index}\n")
            stdout.flush()
    except Exception as exc:  # reported to the writer, which raises it
        stdout.write(f"fail {type(exc).__name__}: {exc}\n".replace("\n", " ").rstrip() + "\n")
        stdout.flush()
        return 1
    return 0
