"""The trace's figures (issue 2): codec, append at each durability, reads, tail, columns, size,
and opening a writer.

Workload: realistic events from ``adapters.synthetic`` (tickers, order observations and trades
with Binance-sized raw payloads, balances), a pool of 100k distinct events cycled to N (1M by
default). Everything is measured end to end from event objects (and once from plain dicts, event
construction included), in one process run, interleaved with its baselines and peers:

- plain file: length-prefixed records with the same encoding, written in 4k-record batches
  (the practical limit of a Python writer);
- SQLite in WAL mode (synchronous=NORMAL, 10k rows per transaction), and the ``eventsourcing``
  library's SQLite application recorder (1k events per insert);
- the seed's layout (Planar's): one Zarr array of variable-length records, chunks of 100,
  Blosc-zstd level 2, appended once a second;
- for construction + append: the same dicts encoded by msgspec into a plain length-prefixed
  file (no event objects at all);
- for opening a writer: creating a plain file, writing one record and fsyncing it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import msgspec
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import synthetic
from benchmarks._harness import interleaved, parse_args, report, target, timed
from eventsrc import REGISTRY, Codec, Event, Trace
from eventsrc.events import Balance

LEN = struct.Struct("<I")


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- the codec against msgspec Structs with the same fields --------------------------------


def struct_twins(classes: set[type[Event]]) -> dict[type[Any], type[msgspec.Struct]]:
    """A frozen msgspec Struct per attrs class, same field names, types and defaults."""
    twins: dict[type[Any], type[msgspec.Struct]] = {}
    balance = msgspec.defstruct(
        "Balance",
        [
            ("currency", str),
            ("total", Decimal | None, None),
            ("free", Decimal | None, None),
            ("used", Decimal | None, None),
        ],
        frozen=True,
    )
    twins[Balance] = balance
    for cls in classes:
        fields: list[tuple[Any, ...]] = []
        hints = __import__("typing").get_type_hints(cls)
        for a in attrs.fields(cls):
            tp = hints[a.name]
            if a.name == "balances":
                tp = tuple[balance, ...]  # type: ignore[valid-type]
            if a.default is attrs.NOTHING:
                fields.append((a.name, tp))
            elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
                fields.append((a.name, tp, msgspec.field(default_factory=a.default.factory)))
            else:
                fields.append((a.name, tp, a.default))
        fields.sort(key=lambda f: len(f) > 2)  # required fields first, as Structs need
        twins[cls] = msgspec.defstruct(cls.__name__, fields, frozen=True, kw_only=True)
    return twins


def to_twin(event: Any, twins: dict[type[Any], type[msgspec.Struct]]) -> Any:
    cls = twins[type(event)]
    values = {}
    for a in attrs.fields(type(event)):
        value = getattr(event, a.name)
        if a.name == "balances":
            value = tuple(to_twin(b, twins) for b in value)
        values[a.name] = value
    return cls(**values)


def bench_codec(pool: list[Event], repeats: int) -> dict[str, float]:
    codec = Codec()
    encoders = {c: codec.encoder_for(REGISTRY.info(c)) for c in {type(e) for e in pool}}
    decoders = {c: codec.decoder(c.kind, c.version) for c in encoders}
    twins = struct_twins(set(encoders))
    twin_pool = [to_twin(e, twins) for e in pool]
    encoder = msgspec.msgpack.Encoder()
    twin_decoders = {c: msgspec.msgpack.Decoder(twins[c]).decode for c in encoders}
    ours = [(decoders[type(e)], encoders[type(e)](e)) for e in pool]
    theirs = [
        (twin_decoders[type(e)], encoder.encode(t)) for e, t in zip(pool, twin_pool, strict=True)
    ]
    assert [d(p) for d, p in ours[:1000]] == pool[:1000]
    stamp = __import__("eventsrc.codec", fromlist=["stamp"]).stamp

    def stream_ours() -> None:
        for d, p in ours:
            stamp(d(p), 0, 0)

    def stream_theirs() -> None:
        for d, p in theirs:
            d(p)

    times = interleaved(
        {
            "ours_encode": lambda: [encoders[type(e)](e) for e in pool],
            "msgspec_encode": lambda: [encoder.encode(t) for t in twin_pool],
            # Streaming: each event decoded, used and dropped, as iteration and replay do.
            "ours_decode": stream_ours,
            "msgspec_decode": stream_theirs,
            # Kept: every decoded event held in a list. Attrs instances are always tracked by
            # the garbage collector; msgspec leaves Structs of scalars untracked, so the
            # collector's passes over the growing list cost the attrs side much more.
            "ours_decode_kept": lambda: [stamp(d(p), 0, 0) for d, p in ours],
            "msgspec_decode_kept": lambda: [d(p) for d, p in theirs],
        },
        repeats,
    )
    n = len(pool)
    figures = {f"codec_{k}_per_s": n / v for k, v in times.items()}
    figures["codec_decode_kept_vs_msgspec"] = (
        times["msgspec_decode_kept"] / times["ours_decode_kept"]
    )
    return figures


# --- appending -----------------------------------------------------------------------------


def make_encode() -> Callable[[Event], bytes]:
    codec = Codec()
    cache: dict[type[Event], Callable[[Event], bytes]] = {}

    def encode(event: Event) -> bytes:
        fn = cache.get(type(event))
        if fn is None:
            fn = cache[type(event)] = codec.encoder_for(REGISTRY.info(type(event)))
        return fn(event)

    return encode


def plain_file(path: Path, events: list[Event], fsync_each: bool = False) -> None:
    encode = make_encode()
    pack = LEN.pack
    with open(path, "wb", buffering=0) as f:
        parts: list[bytes] = []
        for event in events:
            payload = encode(event)
            parts.append(pack(len(payload)))
            parts.append(payload)
            if fsync_each:
                f.write(b"".join(parts))
                parts.clear()
                os.fdatasync(f.fileno())
            elif len(parts) >= 8192:
                f.write(b"".join(parts))
                parts.clear()
        f.write(b"".join(parts))
        os.fsync(f.fileno())


def ours(path: Path, events: list[Event], durability: str) -> None:
    with Trace.open(path, "w", durability=durability) as trace:  # type: ignore[arg-type]
        append = trace.append
        for event in events:
            append(event)


def sqlite_wal(path: Path, events: list[Event]) -> None:
    encode = make_encode()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, ts INTEGER, exchange_ts INTEGER,"
        " kind TEXT, asset TEXT, payload BLOB)"
    )
    rows: list[tuple[Any, ...]] = []
    for seq, event in enumerate(events):
        rows.append(
            (seq, time.time_ns(), event.exchange_ts, event.kind, event.asset, encode(event))
        )
        if len(rows) == 10_000:
            con.execute("BEGIN")
            con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)
            con.execute("COMMIT")
            rows.clear()
    con.execute("BEGIN")
    con.executemany("INSERT INTO events VALUES (?,?,?,?,?,?)", rows)
    con.execute("COMMIT")
    con.close()


def eventsourcing_sqlite(path: Path, events: list[Event]) -> None:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    encode = make_encode()
    datastore = SQLiteDatastore(str(path))
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    stream = uuid.uuid4()
    batch = []
    for version, event in enumerate(events, 1):
        batch.append(StoredEvent(stream, version, event.kind, encode(event)))
        if len(batch) == 1000:
            recorder.insert_events(batch)
            batch = []
    if batch:
        recorder.insert_events(batch)
    datastore.close()


def seed_layout(path: Path, events: list[Event]) -> None:
    """Planar's layout: one vlen array, chunks of 100, Blosc-zstd 2, appended every second."""
    import zarr
    from zarr.codecs import BloscCodec

    encode = make_encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        array = zarr.create_array(
            str(path),
            shape=(0,),
            chunks=(100,),
            dtype=zarr.dtype.VariableLengthBytes(),
            compressors=BloscCodec(cname="zstd", clevel=2),
        )
        buffer: list[bytes] = []
        last = time.monotonic()
        for event in events:
            buffer.append(encode(event))
            now = time.monotonic()
            if now - last >= 1.0:
                array.append(np.array(buffer, dtype=object))
                buffer.clear()
                last = now
        if buffer:
            array.append(np.array(buffer, dtype=object))


def construct_ours(path: Path, rows: list[tuple[type[Event], dict[str, Any]]]) -> None:
    """Build each event from its dict and append it (durability "group")."""
    with Trace.open(path, "w", durability="group") as trace:
        append = trace.append
        for cls, fields in rows:
            append(cls(**fields))


def construct_plain(path: Path, rows: list[tuple[type[Event], dict[str, Any]]]) -> None:
    """The same dicts, msgspec-encoded into a length-prefixed file (batched, fsync at end)."""
    encode = msgspec.msgpack.encode
    pack = LEN.pack
    with open(path, "wb", buffering=0) as f:
        parts: list[bytes] = []
        for _, fields in rows:
            payload = encode(fields)
            parts.append(pack(len(payload)))
            parts.append(payload)
            if len(parts) >= 8192:
                f.write(b"".join(parts))
                parts.clear()
        f.write(b"".join(parts))
        os.fsync(f.fileno())


def construct_only(rows: list[tuple[type[Event], dict[str, Any]]]) -> None:
    for cls, fields in rows:
        cls(**fields)


def bench_construct(pool: list[Event], n: int, work: Path, repeats: int) -> dict[str, float]:
    """Construction + append from the events' plain dicts, vs msgspec into a plain file."""
    row_pool = [(type(e), attrs.asdict(e, recurse=False)) for e in pool]
    rows = list(itertools.islice(itertools.cycle(row_pool), n))
    ours_path, plain_path = work / "construct-group", work / "construct-plain"

    def clear(name: str) -> None:
        shutil.rmtree(ours_path, ignore_errors=True)
        plain_path.unlink(missing_ok=True)

    built = interleaved(
        {
            "group": lambda: construct_ours(ours_path, rows),
            "plain": lambda: construct_plain(plain_path, rows),
            "construct_only": lambda: construct_only(rows),
        },
        repeats,
        setup=clear,
    )
    clear("")
    return {
        "construct_append_group_per_s": n / built["group"],
        "construct_plain_msgspec_per_s": n / built["plain"],
        "construct_append_group_vs_plain": built["plain"] / built["group"],
        "construct_only_us_per_event": built["construct_only"] / n * 1e6,
    }


# --- opening a writer ----------------------------------------------------------------------


def open_and_append(path: Path, mode: str, event: Event) -> float:
    """Seconds from Trace.open to the first append returning (durability "sync")."""
    start = time.perf_counter()
    trace = Trace.open(path, mode)  # type: ignore[arg-type]
    trace.append(event)
    elapsed = time.perf_counter() - start
    trace.close()
    return elapsed


def plain_open_and_append(path: Path, payload: bytes) -> float:
    """The baseline: create a file, write one length-prefixed record, fsync it."""
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, LEN.pack(len(payload)) + payload)
    os.fsync(fd)
    elapsed = time.perf_counter() - start
    os.close(fd)
    return elapsed


def bench_open(work: Path, event: Event, repeats: int) -> dict[str, float]:
    """Median ms to open a new trace ("w") and append, to reopen one ("a") and append, and of
    the plain-file baseline, interleaved."""
    payload = make_encode()(event)
    times: dict[str, list[float]] = {"w": [], "a": [], "plain": []}
    for i in range(repeats):
        path = work / f"open-{i}"
        times["w"].append(open_and_append(path, "w", event))
        times["a"].append(open_and_append(path, "a", event))
        times["plain"].append(plain_open_and_append(work / f"open-{i}.plain", payload))
    ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    return {
        "open_w_first_append_ms": ms["w"],
        "open_a_first_append_ms": ms["a"],
        "open_plain_first_append_ms": ms["plain"],
        "open_w_vs_plain": ms["w"] / ms["plain"],
        "open_a_vs_plain": ms["a"] / ms["plain"],
    }


# --- reading -------------------------------------------------------------------------------


def read_plain(path: Path) -> int:
    """Read back and decode the plain file (the baseline of streaming reads)."""
    codec = Codec()
    decoders = [codec.decoder(info.name, info.version) for info in REGISTRY.kinds()]
    data = path.read_bytes()
    offset, n, count = 0, len(data), 0
    unpack = LEN.unpack_from
    # The plain file holds no kind column; decode as the cheapest faithful stand-in: any.
    decode_any = msgspec.msgpack.Decoder().decode
    del decoders
    while offset < n:
        (length,) = unpack(data, offset)
        decode_any(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
        count += 1
    return count


def tail_latency(path: Path, repeats: int) -> tuple[float, float]:
    """(cold, warm) median ms of tail(100): cold on a freshly opened reader."""
    cold, warm = [], []
    for _ in range(repeats):
        with Trace.open(path) as trace:
            cold.append(timed(lambda t=trace: t.tail(100)) * 1e3)  # type: ignore[misc]
            warm.append(timed(lambda t=trace: t.tail(100)) * 1e3)  # type: ignore[misc]
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    args = parse_args(__doc__ or "")
    n = 20_000 if args.quick else 1_000_000
    n_sync = 300 if args.quick else 5_000
    n_slow_peer = 20_000 if args.quick else 200_000
    repeats = args.repeats or (1 if args.quick else 3)
    pool = list(synthetic.stream(min(n, 100_000), seed=1))
    events = list(itertools.islice(itertools.cycle(pool), n))
    sync_events = events[:n_sync]
    work = Path(tempfile.mkdtemp(prefix="trace-bench-"))
    results: dict[str, Any] = {"events": n, "events_sync": n_sync, "events_slow_peers": n_slow_peer}
    try:
        # First, before anything else in this process has opened a trace (eventsrc imported).
        results["open_w_first_in_process_ms"] = open_and_append(work / "first", "w", pool[0]) * 1e3
        results.update(bench_open(work, pool[0], 5 if args.quick else 15))
        results.update(bench_codec(pool, max(repeats, 3)))

        paths = {
            name: work / name
            for name in (
                "plain",
                "group",
                "none",
                "sqlite",
                "eventsourcing",
                "seed",
                "sync",
                "plain_sync",
            )
        }

        def clear(name: str) -> None:
            target_path = paths[name.split(":")[0]]
            if target_path.is_dir():
                shutil.rmtree(target_path)
            elif target_path.exists():
                target_path.unlink()

        big = interleaved(
            {
                "plain": lambda: plain_file(paths["plain"], events),
                "group": lambda: ours(paths["group"], events, "group"),
                "none": lambda: ours(paths["none"], events, "none"),
                "sqlite": lambda: sqlite_wal(paths["sqlite"], events),
            },
            repeats,
            setup=clear,
        )
        slow = interleaved(
            {
                "eventsourcing": lambda: eventsourcing_sqlite(
                    paths["eventsourcing"], events[:n_slow_peer]
                ),
                "seed": lambda: seed_layout(paths["seed"], events[:n_slow_peer]),
            },
            1,
            setup=clear,
        )
        sync = interleaved(
            {
                "sync": lambda: ours(paths["sync"], sync_events, "sync"),
                "plain_sync": lambda: plain_file(paths["plain_sync"], sync_events, True),
            },
            repeats,
            setup=clear,
        )
        rate = {k: n / v for k, v in big.items()}
        rate.update({k: n_slow_peer / v for k, v in slow.items()})
        rate.update({k: n_sync / v for k, v in sync.items()})
        for name in paths:
            results[f"append_{name}_per_s"] = rate[name]
        results["append_group_vs_plain"] = rate["group"] / rate["plain"]
        results["append_none_vs_plain"] = rate["none"] / rate["plain"]
        results["append_sync_vs_plain_fsync_each"] = rate["sync"] / rate["plain_sync"]
        best_peer = max(rate["sqlite"], rate["eventsourcing"], rate["seed"])
        results["append_group_vs_best_peer"] = rate["group"] / best_peer

        results.update(bench_construct(pool, n, work, repeats))

        # Streaming reads, on a fresh reader each time.
        def read_ours() -> int:
            with Trace.open(paths["group"]) as trace:
                return sum(1 for _ in trace)

        assert read_ours() == n
        reads = interleaved(
            {"ours": read_ours, "plain": lambda: read_plain(paths["plain"])}, repeats
        )
        results["read_ours_per_s"] = n / reads["ours"]
        results["read_plain_decode_any_per_s"] = n / reads["plain"]
        results["read_ours_vs_plain"] = reads["plain"] / reads["ours"]

        # tail(100) at 10k and at N events.
        small = work / "tail10k"
        ours(small, events[:10_000], "none")
        cold_small, warm_small = tail_latency(small, max(repeats, 5))
        cold_big, warm_big = tail_latency(paths["group"], max(repeats, 5))
        results["tail100_ms_10k_cold"] = cold_small
        results["tail100_ms_10k_warm"] = warm_small
        results[f"tail100_ms_{n // 1000}k_cold"] = cold_big
        results[f"tail100_ms_{n // 1000}k_warm"] = warm_big
        results["tail100_big_vs_10k"] = cold_big / cold_small

        # One envelope column, on a fresh reader each time.
        column_times = []
        for _ in range(max(repeats, 5)):
            with Trace.open(paths["group"]) as trace:
                column_times.append(timed(lambda t=trace: t.column("ts")))  # type: ignore[misc]
        results["column_ts_values_per_s"] = n / statistics.median(column_times)

        results["bytes_per_event_ours"] = du(paths["group"]) / n
        results["bytes_per_event_plain"] = du(paths["plain"]) / n
        results["bytes_per_event_sqlite"] = du(paths["sqlite"]) / n
        results["bytes_ours_vs_plain"] = (
            results["bytes_per_event_ours"] / results["bytes_per_event_plain"]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    targets = {
        "codec_encode_vs_msgspec": target(
            results["codec_ours_encode_per_s"] / results["codec_msgspec_encode_per_s"], 0.5, ">="
        ),
        "codec_decode_vs_msgspec": target(
            results["codec_ours_decode_per_s"] / results["codec_msgspec_decode_per_s"], 0.5, ">="
        ),
        "append_group_vs_plain": target(results["append_group_vs_plain"], 0.5, ">="),
        "construct_append_group_vs_plain": target(
            results["construct_append_group_vs_plain"], 0.5, ">="
        ),
        "open_w_first_append_ms": target(results["open_w_first_append_ms"], 100.0, "<="),
        "open_w_first_in_process_ms": target(results["open_w_first_in_process_ms"], 100.0, "<="),
        "append_group_vs_best_peer": target(results["append_group_vs_best_peer"], 1.0, ">="),
        "tail100_ms_big_cold": target(cold_big, 5.0, "<="),
        "tail100_big_vs_10k": target(results["tail100_big_vs_10k"], 2.0, "<="),
        "column_values_per_s": target(results["column_ts_values_per_s"], 20e6, ">="),
        "bytes_vs_plain": target(results["bytes_ours_vs_plain"], 1.0, "<="),
    }
    report("trace", results, targets, args.json)


if __name__ == "__main__":
    main()
