"""The commit marker and the writer's lock: the small files that make a directory a trace.

The commit marker is the Zarr group's own ``zarr.json``: its ``attributes["eventsrc"]`` hold the
format and its version, the committed (sealed) length, the unit sizes and the code tables.
It is replaced atomically (temp file, fsync, rename, fsync the directory); that rename is the
point at which a unit becomes part of the body.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from eventsrc.errors import (
    NotATrace,
    TraceCorrupted,
    TraceExists,
    TraceLocked,
    TraceNotFound,
    TraceStorageError,
    TraceVersionError,
)
from eventsrc.trace.body import create_body
from eventsrc.trace.files import fsync_all, fsync_dir, replace_file, write_file
from eventsrc.trace.segment import create_segment, segment_name
from eventsrc.trace.tables import CodeTables

FORMAT = "eventsrc-trace"
FORMAT_VERSION = 1


def read_meta(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise TraceNotFound(f"no trace at {root}")
    if not root.is_dir():
        raise NotATrace(f"{root} is not a trace (not a directory)")
    try:
        doc = json.loads((root / "zarr.json").read_bytes())
    except FileNotFoundError:
        raise NotATrace(f"{root} is not a trace (no zarr.json)") from None
    except (ValueError, OSError) as exc:
        raise NotATrace(f"{root} is not a trace (unreadable zarr.json: {exc})") from None
    return marker_of(doc, root)


def marker_of(doc: Any, root: Path | str) -> dict[str, Any]:
    """The commit marker in a trace group's metadata document ``doc`` (its ``zarr.json``,
    parsed), checked: NotATrace, TraceVersionError or TraceCorrupted naming ``root`` (a path,
    or a store's URL) if it is not one this eventsrc reads."""
    meta = doc.get("attributes", {}).get("eventsrc") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NotATrace(f"{root} is a Zarr group but not an eventsrc trace")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise TraceVersionError(
            f"trace {root} has format version {version}; this eventsrc reads up to "
            f"{FORMAT_VERSION} (upgrade eventsrc to read it)"
        )
    _check(root, meta)
    return meta


def _check(root: Path | str, meta: dict[str, Any]) -> None:
    """TraceCorrupted, naming the key, unless the marker holds what a trace needs."""
    where = f"trace {root}: its commit marker ({root}/zarr.json, attributes.eventsrc)"
    for key, kind in (
        ("committed", int),
        ("unit", int),
        ("record_chunk", int),
        ("kinds", list),
        ("assets", list),
        ("sources", list),
    ):
        if key not in meta:
            raise TraceCorrupted(f"{where} has no {key!r}")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise TraceCorrupted(f"{where} has a {key!r} that is not a {kind.__name__}")
    unit, chunk, committed = meta["unit"], meta["record_chunk"], meta["committed"]
    # committed need not be a whole number of units: closing a trace seals its last, partial one
    if unit <= 0 or chunk <= 0 or unit % chunk or committed < 0:
        raise TraceCorrupted(
            f"{where} has impossible sizes (unit {unit}, record_chunk {chunk}, "
            f"committed {committed})"
        )


def _marker(root: Path, meta: dict[str, Any]) -> bytes:
    """The group's zarr.json with ``meta`` as attributes["eventsrc"]."""
    path = root / "zarr.json"
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": {}}
    doc.setdefault("attributes", {})["eventsrc"] = meta
    return json.dumps(doc, indent=1).encode()


def write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Replace the group's zarr.json with ``meta`` as attributes["eventsrc"]: temp file, fsync,
    rename, fsync the directory. The rename is the commit point."""
    replace_file(root / "zarr.json", _marker(root, meta))
    fsync_dir(root)


def _holder(root: Path) -> str:
    try:
        info = json.loads((root / "LOCK").read_bytes())
        return f"pid {info['pid']} on {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def take_lock(root: Path, wait_for_dead: float = 10.0) -> int:
    """Take the trace's exclusive writer lock; returns its fd (closing it releases the lock).

    If the recorded holder is a process that no longer exists, its committer child (which
    shares the lock) is finishing the unit it was given; wait up to ``wait_for_dead`` seconds
    for it rather than refusing a restart after a crash.
    """
    fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_for_dead
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if _holder_alive(root) or time.monotonic() > deadline:
                os.close(fd)
                raise TraceLocked(
                    f"trace {root} is already open for writing by {_holder(root)}; "
                    "open it with mode='r' to read"
                ) from None
            time.sleep(0.01)  # a dead writer's committer is sealing its last unit
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return fd


def _holder_alive(root: Path) -> bool:
    """False only when the lock's recorded holder is a process on this host that is gone."""
    try:
        info = json.loads((root / "LOCK").read_bytes())
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create(root: Path, unit: int, record_chunk: int) -> int:
    """Create a new trace at ``root`` atomically (built aside, then renamed into place);
    returns the writer lock's fd."""
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise TraceStorageError(
            f"cannot create a trace at {root}: {exc.filename} is not a directory"
        ) from None
    tmp = root.parent / f".{root.name}.creating-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    fd = -1
    try:
        fd = take_lock(tmp)
        written = create_body(tmp, unit, record_chunk)
        (tmp / "wal").mkdir()
        # The segment at the committed length always exists (recovery.py).
        os.close(create_segment(tmp / "wal", 0, sync=False))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "committed": 0,
            "unit": unit,
            "record_chunk": record_chunk,
            **CodeTables().to_marker(),
            "created_ns": time.time_ns(),
        }
        write_file(tmp / "zarr.json", _marker(tmp, meta), sync=False)
        wal = tmp / "wal"
        # Everything durable before the rename makes it a trace: in one go (files.py).
        fsync_all([*written, wal / segment_name(0), wal, tmp / "zarr.json", tmp])
        try:
            os.rename(tmp, root)
        except OSError:
            raise TraceExists(
                f"cannot create a trace at {root}: it exists and is not empty"
            ) from None
        fsync_dir(root.parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return fd
