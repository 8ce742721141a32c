"""The sealed body in any Zarr store: one contract every storage backend passes, reading a
sealed trace back from a zip, fsspec memory and a real S3-compatible server (moto, on
127.0.0.1, started here), and ``eventsrc export --to URL``."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapters import synthetic
from adapters.cli import main
from eventsrc import Trace, TraceError, replay_from_trace
from eventsrc.codec import state_hash
from eventsrc.errors import TraceExists, TraceReadOnly
from eventsrc.events import Note
from eventsrc.snapshot import save_snapshot
from eventsrc.trace.body import COLUMNS, body_metadata, check_appendable
from eventsrc.trace.record import envelope_table
from eventsrc.trace.store import (
    BodySink,
    LocalBody,
    LocalSink,
    MemoryBody,
    SealedBody,
    ZarrBody,
    ZarrSink,
    export_body,
    sink_for,
)
from eventsrc.trace.tables import CodeTables

UNIT, CHUNK, UNITS = 64, 16, 3


def write_sealed(path: Path, n: int = UNIT * UNITS) -> None:
    """A trace of ``n`` synthetic events (tickers, orders, fills, balances, notes)."""
    with Trace.open(path, "w", unit=UNIT, record_chunk=CHUNK) as trace:
        trace.extend(synthetic.stream(n - 1, seed=3))
        trace.append(Note("the end", asset="BTC/USDT", source="test"))


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trace whose events are all sealed (a whole number of units)."""
    path = tmp_path_factory.mktemp("sealed") / "trace"
    write_sealed(path)
    with Trace.open(path) as trace:
        assert len(trace) == trace.committed == UNIT * UNITS
    return path


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real S3-compatible server (moto) on 127.0.0.1, and the storage options to reach it."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    mp = pytest.MonkeyPatch()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        mp.setenv(key, value)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3 = pytest.importorskip("boto3")
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="traces")
        yield {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    finally:
        server.stop()
        mp.undo()


def events_of(trace: Trace) -> list[Any]:
    return list(trace)


# ---------------------------------------------------------------------------------------------
# The contract: every backend


Backend = Callable[[Path], tuple[BodySink, Callable[[], SealedBody]]]


def _local(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
    return LocalSink(root / "t"), lambda: LocalBody(root / "t")


def _zarr_local(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
    from zarr.storage import LocalStore

    sink = ZarrSink(LocalStore(root / "z"))
    return sink, lambda: ZarrBody(LocalStore(root / "z", read_only=True))


def _zarr_memory(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
    from zarr.storage import MemoryStore

    store = MemoryStore()
    return ZarrSink(store), lambda: ZarrBody(store)


def _zarr_fsspec_memory(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
    from zarr.storage import FsspecStore

    url = f"memory://contract/{uuid.uuid4().hex}"
    return ZarrSink(FsspecStore.from_url(url)), lambda: ZarrBody(
        FsspecStore.from_url(url, read_only=True)
    )


def _memory(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
    body = MemoryBody()
    return body, lambda: body


BACKENDS: dict[str, Backend] = {
    "local": _local,
    "zarr-local": _zarr_local,
    "zarr-memory": _zarr_memory,
    "zarr-fsspec-memory": _zarr_fsspec_memory,
    "memory": _memory,
}


def _zarr_s3(s3: dict[str, Any]) -> Backend:
    def backend(root: Path) -> tuple[BodySink, Callable[[], SealedBody]]:
        from zarr.storage import FsspecStore

        url = f"s3://traces/contract-{uuid.uuid4().hex}"
        return ZarrSink(FsspecStore.from_url(url, storage_options=s3)), lambda: ZarrBody(
            FsspecStore.from_url(url, storage_options=s3, read_only=True)
        )

    return backend


@pytest.mark.parametrize("name", [*BACKENDS, "zarr-s3"])
def test_every_body_backend_keeps_the_contract(
    name: str, sealed: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    backend = _zarr_s3(request.getfixturevalue("s3")) if name == "zarr-s3" else BACKENDS[name]
    source = LocalBody(sealed)
    meta = source.marker()
    tables = CodeTables.from_marker(meta, "source")
    items = source.records(0, UNIT * UNITS)
    heads = envelope_table(items, prefixed=False)
    sink, reader = backend(tmp_path)

    sink.create(UNIT, CHUNK)
    with pytest.raises(TraceExists):
        sink.create(UNIT, CHUNK)  # a second body where there is one
    assert reader().marker()["committed"] == 0
    with pytest.raises(ValueError):
        sink.write_unit(1, items[:UNIT])  # events 0.. are not unit 1
    with pytest.raises(ValueError):
        sink.write_unit(0, items[: UNIT + 1])  # more than a unit
    with pytest.raises(ValueError):
        sink.write_unit(0, [])  # nothing
    for index in range(UNITS):
        sink.write_unit(index, items[index * UNIT : (index + 1) * UNIT])
        # Written, not committed: nothing a reader sees.
        assert reader().marker()["committed"] == 0
    sink.commit(UNIT * UNITS, tables)

    body = reader()
    got = body.marker()
    assert (got["committed"], got["unit"], got["record_chunk"]) == (UNIT * UNITS, UNIT, CHUNK)
    assert CodeTables.from_marker(got, "x").to_marker() == tables.to_marker()
    for start, stop in ((0, UNIT * UNITS), (5, 77), (UNIT, 2 * UNIT), (130, 131), (9, 9)):
        assert body.records(start, stop) == items[start:stop]
        for column in COLUMNS:
            values = body.column(column, start, stop)
            assert values.dtype == heads[column].dtype
            assert np.array_equal(values, heads[column][start:stop])
    with Trace.open(sealed) as original, Trace.open_store(body) as trace:
        assert len(trace) == trace.committed == UNIT * UNITS
        assert events_of(trace) == events_of(original)
        assert trace[-1] == original[-1] and trace[70] == original[70]
        for column in ("kind", "asset", "source"):
            assert trace.code_table(column) == original.code_table(column)  # type: ignore[arg-type]
        assert np.array_equal(trace.column("ts"), original.column("ts"))
        assert trace.tail(3, asset="BTC/USDT") == original.tail(3, asset="BTC/USDT")
        assert state_hash(replay_from_trace(trace)) == state_hash(replay_from_trace(original))


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_body_backend_takes_a_partial_last_unit(
    name: str, sealed: Path, tmp_path: Path
) -> None:
    """A closed trace's last unit is partial (closing seals it): every backend stores and
    reads it back, and a trace directory made of it takes more events."""
    source = LocalBody(sealed)
    tables = CodeTables.from_marker(source.marker(), "source")
    n = UNIT + 10
    items = source.records(0, n)
    heads = envelope_table(items, prefixed=False)
    sink, reader = BACKENDS[name](tmp_path)
    sink.create(UNIT, CHUNK)
    sink.write_unit(0, items[:UNIT])
    with pytest.raises(ValueError):
        sink.write_unit(1, items[UNIT + 1 : n])  # not from the unit's first event
    sink.write_unit(1, items[UNIT:n])
    sink.commit(n, tables)
    body = reader()
    assert body.marker()["committed"] == n
    for start, stop in ((0, n), (UNIT - 1, n), (n - 1, n), (UNIT + 2, UNIT + 5)):
        assert body.records(start, stop) == items[start:stop]
        for column in COLUMNS:
            assert np.array_equal(body.column(column, start, stop), heads[column][start:stop])
    with Trace.open(sealed) as original, Trace.open_store(body) as trace:
        assert len(trace) == n and events_of(trace) == events_of(original)[:n]
    if name == "local":  # a trace directory: a writer goes on where the copy ends
        with Trace.open(tmp_path / "t", "a") as trace:
            trace.extend(synthetic.stream(UNIT, seed=4))
        with Trace.open(tmp_path / "t") as trace, Trace.open(sealed) as original:
            assert len(trace) == trace.committed == n + UNIT and trace.check().ok
            assert events_of(trace)[:n] == events_of(original)[:n]


def test_a_body_written_through_zarr_is_a_trace_the_local_writer_appends_to(
    sealed: Path, tmp_path: Path
) -> None:
    """The zarr-python sink writes exactly the metadata the fast local writer writes."""
    from zarr.storage import LocalStore

    n = export_body(LocalBody(sealed), ZarrSink(LocalStore(tmp_path / "z")))
    check_appendable(tmp_path / "z", body_metadata(tmp_path / "z", UNIT, CHUNK))
    with Trace.open_store(str(tmp_path / "z")) as trace, Trace.open(sealed) as original:
        assert len(trace) == n and events_of(trace) == events_of(original)


# ---------------------------------------------------------------------------------------------
# Opening a sealed trace from any store


@pytest.mark.parametrize("target", ["zip", "zip-url", "memory", "directory", "file-url"])
def test_a_sealed_trace_copied_to_a_store_reads_back_equal(
    target: str, sealed: Path, tmp_path: Path
) -> None:
    url = {
        "zip": str(tmp_path / "trace.zip"),
        "zip-url": f"zip://{tmp_path / 'other.zip'}",
        "memory": f"memory://eventsrc-tests/{uuid.uuid4().hex}",
        "directory": str(tmp_path / "copy"),
        "file-url": f"file://{tmp_path / 'copy2'}",
    }[target]
    assert export_body(LocalBody(sealed), sink_for(url)) == UNIT * UNITS
    with Trace.open(sealed) as original, Trace.open_store(url) as trace:
        assert len(trace) == len(original)
        assert events_of(trace) == events_of(original)
        assert [trace[i] for i in (0, 63, 64, -1)] == [original[i] for i in (0, 63, 64, -1)]
        assert state_hash(replay_from_trace(trace)) == state_hash(replay_from_trace(original))
        trace.refresh()  # a sealed body does not change
        assert len(trace) == UNIT * UNITS
        with pytest.raises(TraceReadOnly):
            trace.append(Note("no"))
        with pytest.raises(TraceReadOnly):
            save_snapshot(trace, replay_from_trace(trace))
    with pytest.raises(TraceExists):
        export_body(LocalBody(sealed), sink_for(url))  # never over an existing one


def test_a_trace_with_unsealed_events_is_refused_or_read_sealed_only(
    tmp_path: Path, tail_unsealed: None
) -> None:
    path = tmp_path / "partial"
    write_sealed(path, n=UNIT * 2 + 10)  # 10 events stay in the write-ahead segment
    with pytest.raises(TraceError, match=r"not sealed .*sealed_only=True .*128 sealed events"):
        Trace.open_store(path)
    with Trace.open_store(path, sealed_only=True) as trace, Trace.open(path) as full:
        assert len(trace) == trace.committed == 2 * UNIT and len(full) == 2 * UNIT + 10
        assert events_of(trace) == events_of(full)[: 2 * UNIT]
    with Trace.open_store(f"file://{path}", sealed_only=True) as trace:
        assert len(trace) == 2 * UNIT


def test_open_store_names_what_is_wrong(tmp_path: Path) -> None:
    from eventsrc.errors import NotATrace, TraceNotFound

    with pytest.raises(TraceNotFound):
        Trace.open_store(tmp_path / "nothing.zip")
    with pytest.raises(TraceNotFound):
        Trace.open_store(f"memory://eventsrc-tests/{uuid.uuid4().hex}")
    import zarr

    zarr.create_group(store=str(tmp_path / "plain"))
    with pytest.raises(NotATrace):
        Trace.open_store(f"file://{tmp_path / 'plain'}")
    with pytest.raises(TraceError, match="nosuchproto"):
        Trace.open_store("nosuchproto://x/y")


# ---------------------------------------------------------------------------------------------
# An S3-compatible object store, and the CLI


def test_export_to_s3_then_open_from_s3_equals_the_local_trace(
    sealed: Path, s3: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://traces/runs/{uuid.uuid4().hex}"
    argv = ["export", str(sealed), "--to", url, "--endpoint-url", s3["endpoint_url"]]
    argv += ["--storage-option", "key=testing", "--storage-option", "secret=testing"]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"copied {UNIT * UNITS} sealed events to {url}\n"
    with Trace.open(sealed) as original, Trace.open_store(url, storage_options=s3) as trace:
        assert len(trace) == len(original)
        assert events_of(trace) == events_of(original)
        assert np.array_equal(trace.column("kind"), original.column("kind"))
        assert state_hash(replay_from_trace(trace)) == state_hash(replay_from_trace(original))
    # Again to the same place: refused, nothing overwritten.
    assert main(argv) == 2
    assert "it is not empty" in capsys.readouterr().err


def test_export_to_errors_are_one_line(
    sealed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tail_unsealed: None
) -> None:
    def fails(*argv: str) -> str:
        assert main(["export", *argv]) != 0
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("eventsrc: error: ")
        return err

    assert "nosuchproto" in fails(str(sealed), "--to", "nosuchproto://x/y")
    partial = tmp_path / "partial"
    write_sealed(partial, n=UNIT + 3)
    err = fails(str(partial), "--to", str(tmp_path / "copy"))
    assert "not sealed yet" in err and "--sealed-only" in err
    assert not (tmp_path / "copy").exists()
    assert main(["export", str(partial), "--to", str(tmp_path / "copy"), "--sealed-only"]) == 0
    assert "(its unsealed events left out)" in capsys.readouterr().out
    with Trace.open(tmp_path / "copy") as trace:
        assert len(trace) == UNIT
    assert "takes no --format" in fails(str(sealed), "--to", "x.zip", "--format", "csv")
    assert "--format" in fails(str(sealed))
    # An endpoint nobody answers on (a port just closed on 127.0.0.1).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pytest.importorskip("s3fs")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    err = fails(
        str(sealed),
        "--to",
        "s3://traces/x",
        "--endpoint-url",
        f"http://127.0.0.1:{port}",
        "--storage-option",
        "key=k",
        "--storage-option",
        "secret=s",
        "--storage-option",
        'config_kwargs={"retries": {"max_attempts": 1}}',
    )
    assert "cannot export to s3://traces/x: EndpointConnectionError: Could not connect" in err
