"""Damage on disk: torn tails are dropped and reported; everything else is a clear error."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from eventsrc import (
    Note,
    Trace,
    TraceCorrupted,
    TraceError,
    TraceNotFound,
    TraceRecovered,
    TraceStorageError,
)
from eventsrc.trace.segment import list_segments

SMALL: dict[str, Any] = {"unit": 64, "record_chunk": 16}


@pytest.fixture(autouse=True)
def _crash_layout(tail_unsealed: None) -> None:
    """The faults here are those a crash leaves: the newest events in the write-ahead segment
    only (a clean close seals them into the body: test_sealed_tail.py)."""


def write(path: Path, n: int) -> None:
    """n events, one append (one frame: durability "sync") each."""
    with Trace.open(path, "w", **SMALL) as trace:
        for i in range(n):
            trace.append(Note(f"{i}:" + "z" * (i % 29), asset="BTC/USDT"))


def last_segment(path: Path) -> Path:
    return list_segments(path / "wal")[-1][1]


def texts(path: Path) -> list[str]:
    with Trace.open(path) as trace:
        return [e.text for e in trace if isinstance(e, Note)]


@pytest.mark.parametrize("cut", [1, 5, 8, 30, 49])
def test_torn_last_record_is_dropped_and_reported(
    trace_path: Path, cut: int, caplog: pytest.LogCaptureFixture
) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-cut])  # a crash in the middle of writing the last record
    with caplog.at_level(logging.WARNING, logger="eventsrc.trace"):
        trace = Trace.open(trace_path, "a")
    assert len(trace) == 100  # 99 events kept, then the record of the recovery
    assert isinstance(trace[99], TraceRecovered) and trace[99].torn
    assert trace.recovery.dropped_frames == 1
    assert trace.recovery.dropped_bytes > 0
    assert "cut off a torn frame" in caplog.text
    assert trace.append(Note("100:again")) == 100  # appending continues where it left off
    trace.close()
    assert texts(trace_path)[-2:] == ["98:" + "z" * (98 % 29), "100:again"]


def test_checksum_failing_last_record_is_dropped(trace_path: Path) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    with Trace.open(trace_path, "a") as trace:
        assert len(trace) == 100
        assert trace.recovery.dropped_frames == 1
        assert not trace.recovery.tails[0].torn


def test_zero_filled_tail_is_dropped(trace_path: Path) -> None:
    write(trace_path, 70)
    segment = last_segment(trace_path)
    with segment.open("ab") as f:
        f.write(b"\x00" * 4096)  # a filesystem can leave zeros after a power cut
    with Trace.open(trace_path, "a") as trace:
        assert len(trace) == 71
        assert trace.recovery.dropped_bytes == 4096
        assert trace.recovery.tails[0].torn


def test_readers_never_drop_anything(trace_path: Path) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])
    with Trace.open(trace_path) as trace:
        assert len(trace) == 99
    assert segment.read_bytes() == data[:-7]  # only the writer repairs


def test_damage_in_the_middle_of_a_segment_is_an_error(trace_path: Path) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    data = bytearray(segment.read_bytes())
    data[200] ^= 0xFF  # inside an early record; good records follow
    segment.write_bytes(bytes(data))
    for mode in ("r", "a"):
        with pytest.raises(TraceCorrupted, match=r"damaged at byte \d+.*good frame follows"):
            Trace.open(trace_path, mode)
    assert segment.read_bytes() == bytes(data)  # nothing was truncated


def test_a_missing_segment_is_an_error(trace_path: Path) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    segment.unlink()
    (segment.parent / "00000000000000000128.wal").write_bytes(b"")  # a later, empty segment
    for mode in ("r", "a"):
        with pytest.raises(TraceCorrupted, match="segment for events from 64 is missing"):
            Trace.open(trace_path, mode)


def test_a_gap_between_body_and_segment_is_an_error(trace_path: Path) -> None:
    write(trace_path, 100)
    segment = last_segment(trace_path)
    segment.rename(segment.parent / "00000000000000000128.wal")
    with pytest.raises(TraceCorrupted):
        Trace.open(trace_path)


def test_a_corrupted_sealed_chunk_names_the_chunk(trace_path: Path) -> None:
    write(trace_path, 200)
    chunk = trace_path / "record" / "c" / "5"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with Trace.open(trace_path) as trace:
        assert trace[0].seq == 0  # other chunks still read
        with pytest.raises(TraceCorrupted, match=r"record/c/5"):
            trace[5 * 16 + 3]
        with pytest.raises(TraceCorrupted, match=r"record/c/5"):
            list(trace)


def test_a_corrupted_envelope_chunk_names_the_chunk(trace_path: Path) -> None:
    write(trace_path, 200)
    chunk = trace_path / "ts" / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[-6] ^= 0x55
    chunk.write_bytes(bytes(data))
    with Trace.open(trace_path) as trace, pytest.raises(TraceCorrupted, match=r"ts/c/1"):
        trace.column("ts")


def test_a_missing_sealed_chunk_is_an_error_not_fill_values(trace_path: Path) -> None:
    write(trace_path, 200)
    (trace_path / "kind" / "c" / "1").unlink()
    (trace_path / "record" / "c" / "2").unlink()
    with Trace.open(trace_path) as trace:
        with pytest.raises(TraceCorrupted, match=r"kind/c/1 is missing"):
            trace.column("kind")
        with pytest.raises(TraceCorrupted, match=r"record/c/2 is missing"):
            list(trace)
        with pytest.raises(TraceCorrupted, match=r"record/c/2 is missing"):
            trace[2 * 16 + 1]


def test_a_segment_with_a_foreign_header_is_an_error(trace_path: Path) -> None:
    write(trace_path, 100)
    last_segment(trace_path).write_bytes(b"this is not a segment at all")
    with pytest.raises(TraceCorrupted, match="not an eventsrc write-ahead segment"):
        Trace.open(trace_path)


def test_a_torn_batch_is_dropped_whole(trace_path: Path) -> None:
    """extend() writes one frame: a crash while writing it loses the whole batch, never half."""
    with Trace.open(trace_path, "w", **SMALL) as trace:
        trace.append(Note("0:"))
        trace.extend(Note(f"{i}:") for i in range(1, 41))
    segment = last_segment(trace_path)
    segment.write_bytes(segment.read_bytes()[:-10])
    with Trace.open(trace_path, "a") as trace:
        assert len(trace) == 2  # the first event, and the record of the recovery
        assert trace.recovery.dropped_frames == 1


def test_a_failed_batch_keeps_definitions_queued_by_an_earlier_failed_append(
    trace_path: Path,
) -> None:
    """A kind (and asset) first met by an append that then failed to encode keeps its code;
    a later failed extend must not forget to write that code's definition."""
    from decimal import Decimal

    from eventsrc import Decision, EventNotSerializable, TickerObserved

    with Trace.open(trace_path, "w") as trace:
        trace.append(Note("first"))
        with pytest.raises(EventNotSerializable):
            trace.append(Decision("d", values={"n": 2**70}, asset="NEW/ASSET"))
        with pytest.raises(EventNotSerializable):
            trace.extend([TickerObserved(bid=Decimal(1)), Decision("x", values={"n": 2**70})])
        trace.append(Decision("ok", values={"n": 1}, asset="NEW/ASSET"))
    with Trace.open(trace_path) as trace:
        last = trace[-1]
        assert isinstance(last, Decision) and last.name == "ok"
        assert last.asset == "NEW/ASSET"
        assert trace.tail(5, asset="NEW/ASSET") == [last]


def test_a_write_error_stops_the_trace_and_loses_nothing_written(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from eventsrc import TraceError

    trace = Trace.open(trace_path, "w", durability="sync")
    for i in range(5):
        trace.append(Note(f"{i}"))

    def full_disk(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full_disk)
    with pytest.raises(TraceError, match="No space left"):
        trace.append(Note("5"))
    monkeypatch.undo()
    with pytest.raises(TraceError):
        trace.append(Note("6"))  # no frame may follow a failed one
    with pytest.raises(TraceError):
        trace.close()
    with Trace.open(trace_path, "a") as again:
        assert [e.text for e in again] == ["0", "1", "2", "3", "4"]  # type: ignore[attr-defined]
        assert again.append(Note("5")) == 5


@pytest.mark.parametrize("durability", ["sync", "group"])
def test_a_failed_writer_says_what_is_durable_and_reopens_with_it(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    trace = Trace.open(trace_path, "w", durability=durability, **SMALL)  # type: ignore[arg-type]
    for i in range(5):
        trace.append(Note(f"{i}"))
    trace.flush()
    assert trace.durable == len(trace) == 5

    def full_disk(fd: int, buffers: list[bytes]) -> int:  # a short write: half a frame
        data = b"".join(buffers)
        written = os.write(fd, data[: len(data) // 2])
        monkeypatch.setattr(os, "write", refusing)
        return written

    def refusing(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full_disk)
    with pytest.raises(TraceError, match="No space left"):
        trace.append(Note("5"))
        trace.append(Note("6"))
        trace.flush()
    assert trace.durable == 5 < len(trace)  # what it took after the last fsync may be lost
    unsure = [e.text for e in trace.iter(trace.durable)]  # type: ignore[attr-defined]
    assert unsure and unsure[0] == "5"
    with pytest.raises(TraceStorageError, match="No space left"):
        trace.reopen()  # the torn frame cannot be set aside while the disk is full
    monkeypatch.undo()
    with trace.reopen() as again:  # (the failed one closes without raising again)
        assert again.durability == durability
        assert [e.text for e in again[:5]] == ["0", "1", "2", "3", "4"]  # type: ignore[attr-defined]
        assert isinstance(again[5], TraceRecovered) and again[5].torn
        assert again.durable == len(again) == 6
        assert again.append(Note("5")) == 6
    with pytest.raises(TraceNotFound):
        shutil.rmtree(trace_path)
        again.reopen()  # never a new trace where one was


def test_a_writer_makes_durable_what_it_finds_at_open(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The last writer wrote these and died before its fsync (durability "none"): they are in
    # the page cache only. The next writer counts them as durable, so it fsyncs them first.
    with Trace.open(trace_path, "w", durability="none", **SMALL) as trace:
        for i in range(100):
            trace.append(Note(f"{i}"))
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with Trace.open(trace_path, "a", durability="group") as trace:
        assert trace.durable == len(trace) == 100
        segments = {str(path) for _, path in list_segments(trace_path / "wal")}
        assert segments and segments <= set(synced)


def test_a_snapshot_the_disk_cannot_take_raises_and_leaves_no_part_of_it(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsrc import replay_from_trace, save_snapshot, snapshot_seqs

    write(trace_path, 10)
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:  # (a file system that allocates at fsync: ENOSPC there)
        if "snapshots" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    with Trace.open(trace_path, "a") as trace:
        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space left"):
            save_snapshot(trace, replay_from_trace(trace))
        monkeypatch.undo()
        assert snapshot_seqs(trace) == []
        assert list((trace_path / "snapshots").iterdir()) == []  # no half-written file either
        save_snapshot(trace, replay_from_trace(trace))  # once there is room
        assert snapshot_seqs(trace) == [9]


def test_an_interrupted_append_leaves_a_whole_trace(trace_path: Path) -> None:
    class Interrupting(list[bytes]):
        def append(self, item: bytes) -> None:
            raise KeyboardInterrupt

    trace = Trace.open(trace_path, "w", durability="none")
    trace.append(Note("0"))
    ring = trace._reader.ring  # the one private reach: an interrupt exactly inside append
    ring.heads = Interrupting(ring.heads)
    with pytest.raises(KeyboardInterrupt):
        trace.append(Note("1"))
    with pytest.raises(TraceError):
        trace.append(Note("2"))  # the seq could be reused: the trace takes no more
    with pytest.raises(TraceError):
        trace.close()  # reports the interruption, but writes what was queued whole
    with Trace.open(trace_path, "a") as again:
        assert [e.text for e in again] == ["0", "1"]  # type: ignore[attr-defined]


# --- the last frame: torn or damaged, never destroyed; a lost segment is never silent -------


def extended(path: Path) -> list[str]:
    """A trace whose last write-ahead frame is one acknowledged batch of 40 events."""
    with Trace.open(path, "w", **SMALL) as trace:
        trace.append(Note("0:"))
        trace.extend(Note(f"{i}:" + "b" * i) for i in range(1, 41))
    return [f"{i}:" + "b" * i for i in range(41)]


def test_a_damaged_last_frame_is_set_aside_and_recorded_not_destroyed(
    trace_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extended(trace_path)
    segment = last_segment(trace_path)
    data = bytearray(segment.read_bytes())
    data[-100] ^= 0x10  # inside the batch's frame: whole length present, checksum fails
    segment.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="eventsrc.trace"):
        trace = Trace.open(trace_path, "a")
    with trace:
        [tail] = trace.recovery.tails
        assert not tail.torn and tail.segment == segment.name
        kept = tail.offset
        assert tail.size == len(data) - kept
        assert segment.read_bytes()[:kept] == data[:kept]  # appending went on from there
        assert "damaged" in caplog.text
        # the dropped bytes are kept inside the trace, byte for byte
        aside = trace_path / trace.recovery.set_aside[0]
        assert aside.parent == trace_path / "recovered"
        assert aside.read_bytes() == bytes(data[kept:])
        # and the recovery is an event of the trace
        recorded = trace[-1]
        assert isinstance(recorded, TraceRecovered)
        assert (recorded.segment, recorded.offset, recorded.dropped_bytes) == (
            segment.name,
            kept,
            len(data) - kept,
        )
        assert not recorded.torn and recorded.set_aside == trace.recovery.set_aside[0]
        assert len(trace) == 2  # the first append, then the record of the recovery


def test_a_torn_last_frame_is_set_aside_and_recorded(trace_path: Path) -> None:
    extended(trace_path)
    segment = last_segment(trace_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])  # a crash while the batch's frame was being written
    with Trace.open(trace_path, "a") as trace:
        [tail] = trace.recovery.tails
        assert tail.torn
        aside = trace_path / trace.recovery.set_aside[0]
        assert aside.read_bytes() == data[tail.offset : -10]
        recorded = trace[-1]
        assert isinstance(recorded, TraceRecovered) and recorded.torn
    with Trace.open(trace_path) as reader:  # the recovery is durable, and nothing is pending
        assert isinstance(reader[-1], TraceRecovered) and reader.recovery.tails == []


def test_a_reader_reports_a_damaged_last_frame_and_leaves_it(
    trace_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts_written = extended(trace_path)
    segment = last_segment(trace_path)
    data = bytearray(segment.read_bytes())
    data[-100] ^= 0x10
    segment.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="eventsrc.trace"):
        reader = Trace.open(trace_path)
    with reader:
        assert [e.text for e in reader] == texts_written[:1]  # type: ignore[attr-defined]
        [tail] = reader.recovery.tails
        assert not tail.torn and tail.segment == segment.name
        assert reader.recovery.set_aside == []
    assert "damaged" in caplog.text and segment.name in caplog.text
    assert segment.read_bytes() == bytes(data)  # readers never change anything


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_deleted_newest_segment_is_detected_not_silently_reused(
    trace_path: Path, mode: str
) -> None:
    write(trace_path, 100)  # events 0..63 sealed, 64..99 in the segment starting at 64
    segment = last_segment(trace_path)
    assert segment.name == "00000000000000000064.wal"
    segment.unlink()
    with pytest.raises(
        TraceCorrupted, match=r"events from 64 is missing \(wal/00000000000000000064\.wal"
    ):
        Trace.open(trace_path, mode)  # type: ignore[arg-type]


def test_a_deleted_first_segment_of_an_empty_trace_is_detected(trace_path: Path) -> None:
    Trace.open(trace_path, "w").close()
    (trace_path / "wal" / "00000000000000000000.wal").unlink()
    for mode in ("r", "a"):
        with pytest.raises(
            TraceCorrupted, match=r"events from 0 is missing \(wal/00000000000000000000\.wal"
        ):
            Trace.open(trace_path, mode)


def unsealed_full_segment(path: Path) -> None:
    """A trace whose first unit is complete in its segment but not sealed (the committer
    could not write the body), and whose next segment exists, empty."""
    Trace.open(path, "w", **SMALL).close()
    chunks = path / "record" / "c"
    chunks.write_bytes(b"")  # a file where the committer needs a directory: it fails
    trace = Trace.open(path, "a")
    trace.extend(Note(f"{i}:") for i in range(64))
    with pytest.raises(TraceError, match="committ"):
        trace.close()
    chunks.unlink()
    assert [p.name for _, p in list_segments(path / "wal")] == [
        "00000000000000000000.wal",
        "00000000000000000064.wal",
    ]


@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_deleted_segment_after_a_full_unsealed_one_is_detected(
    trace_path: Path, mode: str
) -> None:
    unsealed_full_segment(trace_path)
    (trace_path / "wal" / "00000000000000000064.wal").unlink()
    with pytest.raises(
        TraceCorrupted, match=r"events from 64 is missing \(wal/00000000000000000064\.wal"
    ):
        Trace.open(trace_path, mode)  # type: ignore[arg-type]


def test_a_torn_frame_before_an_empty_next_segment_is_a_torn_tail(trace_path: Path) -> None:
    """Rotation creates the next segment before the frame that completes a unit is written:
    a crash in between leaves a torn frame followed by an empty segment, a normal tail."""
    unsealed_full_segment(trace_path)
    first = trace_path / "wal" / "00000000000000000000.wal"
    first.write_bytes(first.read_bytes()[:-3])
    with Trace.open(trace_path) as reader:
        assert len(reader) == 0 and reader.recovery.tails[0].torn
    with Trace.open(trace_path, "a") as trace:
        assert isinstance(trace[0], TraceRecovered)
        trace.extend(Note(f"again {i}") for i in range(100))
    with Trace.open(trace_path) as reader:
        assert len(reader) == 101 and reader.committed == 64


# --- damaged metadata and refusing file systems: clear errors, never tracebacks -------------


@pytest.mark.parametrize("key", ["committed", "unit", "record_chunk", "kinds", "assets", "sources"])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_marker_missing_a_key_is_a_clear_error(trace_path: Path, key: str, mode: str) -> None:
    write(trace_path, 10)
    marker = trace_path / "zarr.json"
    doc = json.loads(marker.read_text())
    del doc["attributes"]["eventsrc"][key]
    marker.write_text(json.dumps(doc))
    with pytest.raises(TraceCorrupted, match=rf"zarr\.json.*{key}"):
        Trace.open(trace_path, mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["no directory", "no zarr.json", "not json", "no shape"])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_a_missing_or_damaged_column_array_is_a_clear_error(
    trace_path: Path, damage: str, mode: str
) -> None:
    write(trace_path, 10)  # opening checks every column's metadata, sealed rows or not
    array = trace_path / "ts"
    if damage == "no directory":
        shutil.rmtree(array)
    elif damage == "no zarr.json":
        (array / "zarr.json").unlink()
    elif damage == "not json":
        (array / "zarr.json").write_text("{ this is not")
    else:
        doc = json.loads((array / "zarr.json").read_text())
        del doc["shape"]
        (array / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(TraceCorrupted, match=r"column 'ts'.*ts/zarr\.json"):
        Trace.open(trace_path, mode)  # type: ignore[arg-type]


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not bind root")
def test_a_read_only_trace_refuses_a_writer_clearly(trace_path: Path) -> None:
    write(trace_path, 10)
    for path in [trace_path, *trace_path.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        with pytest.raises(TraceStorageError, match=str(trace_path)):
            Trace.open(trace_path, "a")
        assert len(Trace.open(trace_path)) == 10  # reading still works
    finally:
        for path in [trace_path, *trace_path.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def refuse(monkeypatch: pytest.MonkeyPatch, error: int, where: Path) -> None:
    """Make the file system refuse writes under ``where`` with ``error`` (EROFS, ENOSPC)."""
    real_open, real_write = os.open, os.write
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & writes and str(path).startswith(str(where)) and error == errno.EROFS:
            raise OSError(error, os.strerror(error), str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_write(fd: int, data: Any) -> int:
        if error == errno.ENOSPC:
            raise OSError(error, os.strerror(error))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "write", guarded_write)


def test_a_read_only_file_system_refuses_a_writer_clearly(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(trace_path, 10)
    refuse(monkeypatch, errno.EROFS, trace_path)
    with pytest.raises(TraceStorageError, match=rf"{trace_path}.*Read-only file system"):
        Trace.open(trace_path, "a")
    assert len(Trace.open(trace_path)) == 10  # reading still works


def test_a_full_disk_at_creation_is_a_clear_error_and_leaves_nothing(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse(monkeypatch, errno.ENOSPC, trace_path.parent)
    with pytest.raises(TraceStorageError, match=rf"{trace_path}.*No space left"):
        Trace.open(trace_path, "w")
    monkeypatch.undo()
    assert not trace_path.exists() and not list(trace_path.parent.iterdir())


def test_a_full_disk_while_setting_a_tail_aside_destroys_nothing(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extended(trace_path)
    segment = last_segment(trace_path)
    data = segment.read_bytes()[:-10]
    segment.write_bytes(data)
    refuse(monkeypatch, errno.ENOSPC, trace_path)
    with pytest.raises(TraceStorageError, match="No space left"):
        Trace.open(trace_path, "a")
    monkeypatch.undo()
    assert segment.read_bytes() == data  # not cut: the bytes could not be kept elsewhere
    with Trace.open(trace_path, "a") as trace:  # once there is room, recovery goes through
        assert isinstance(trace[-1], TraceRecovered)


def test_no_frame_follows_one_the_group_commit_failed_to_write(
    trace_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group commit's write fails (the frame it took is lost, maybe torn); until it has
    said so, an append that drains on its own must not write a later frame after it: that
    would leave a hole in the segment, read back as damage or lost events."""
    import threading

    from eventsrc import TraceError
    from eventsrc.trace import appender as appender_module
    from eventsrc.trace.segment import SegmentWriter

    real_write = SegmentWriter._write
    failing, told = threading.Event(), threading.Event()

    def write(self: SegmentWriter, records: Any) -> None:
        if threading.current_thread().name.startswith("eventsrc-flush"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, records)

    real_fail = appender_module.Appender._fail

    def fail(self: Any, exc: BaseException, doing: str) -> None:
        if threading.current_thread().name.startswith("eventsrc-flush"):
            failing.set()
            told.wait(30)  # hold the failing flusher here, before it has said so
        real_fail(self, exc, doing)

    monkeypatch.setattr(SegmentWriter, "_write", write)
    monkeypatch.setattr(appender_module.Appender, "_fail", fail)
    trace = Trace.open(trace_path, "w", durability="group", group_interval=0.001)
    try:
        trace.append(Note("0"))
        trace._appender._flush_wanted.set()  # type: ignore[union-attr]
        assert failing.wait(30)
        with pytest.raises(TraceError):
            for i in range(1, 3 * appender_module._DRAIN_AT):
                trace.append(Note(f"{i}"))  # past _DRAIN_AT an append writes a frame itself
    finally:
        told.set()
        monkeypatch.undo()
        with pytest.raises(TraceError):
            trace.close()
    with Trace.open(trace_path, "a") as again:  # no hole: a readable, appendable trace
        texts = [e.text for e in again if isinstance(e, Note)]
        assert texts == [str(i) for i in range(len(texts))]
