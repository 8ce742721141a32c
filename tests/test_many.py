"""One projection over many traces (projections/many.py): a plain loop, Dask's local schedulers
and a distributed LocalCluster give the same concatenated table, value by value."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from adapters import synthetic
from eventsrc import Trace, TraceNotFound, replay_from_trace
from eventsrc.trace.store import LocalBody, export_body, sink_for
from projections.many import Outcome, ProjectionFailed, concat, each, open_trace, over
from projections.stats import trace_stats
from projections.summary import all_fills, fill_line

SEEDS = (1, 2, 3, 4)


def fills(trace: Trace) -> list[dict[str, Any]]:
    """Rows: every fill of the folded state (exact decimals, real and emulated)."""
    return [attrs.asdict(fill_line(f)) for f in all_fills(replay_from_trace(trace))]


def kinds(trace: Trace) -> pd.DataFrame:
    """A frame: events per kind, from the envelope columns."""
    by_kind = trace_stats(trace).by_kind or {}
    return pd.DataFrame({"kind": list(by_kind), "events": list(by_kind.values())})


def envelope(trace: Trace) -> np.ndarray[Any, Any]:
    """A structured array: three envelope columns."""
    out = np.empty(len(trace), [("seq", "i8"), ("ts", "i8"), ("kind", "i8")])
    for name in ("seq", "ts", "kind"):
        out[name] = trace.column(name)
    return out


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("many")
    made = []
    for i, seed in enumerate(SEEDS):
        path = root / f"run-{i}"
        with Trace.open(path, "w", durability="none") as trace:
            trace.extend(synthetic.stream(150 + 50 * i, seed=seed))
        made.append(path)
    return made


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    # Threads in this process (inproc transport): no ports, no spawned interpreters; two
    # workers so the tasks really are spread over a cluster.
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as connected,
    ):
        yield connected


def plain_loop(paths: list[Path]) -> pd.DataFrame:
    """The single-process reference, written without projections.many."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        with Trace.open(path, "r") as trace:
            rows.extend({"trace": str(path), **row} for row in fills(trace))
    return pd.DataFrame(rows)


def same_values(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(found.columns) == list(expected.columns)
    assert found.to_dict("records") == expected.to_dict("records")
    pd.testing.assert_frame_equal(found, expected)


def test_dask_locally_and_on_a_local_cluster_equal_a_plain_loop(
    paths: list[Path], client: Client
) -> None:
    expected = plain_loop(paths)
    assert set(expected["trace"]) == {str(p) for p in paths}  # every trace had fills
    for scheduler in ("sync", "threads"):
        same_values(over(paths, fills, progress=False, scheduler=scheduler), expected)
    same_values(over(paths, fills, client=client, progress=False), expected)


def test_rows_come_in_the_order_of_the_traces_given(paths: list[Path], client: Client) -> None:
    backwards = list(reversed(paths))
    found = over(backwards, fills, client=client, progress=False)
    assert isinstance(found, pd.DataFrame)
    assert list(dict.fromkeys(found["trace"])) == [str(p) for p in backwards]
    same_values(found, plain_loop(backwards))


def test_the_trace_column_names_each_rows_source(paths: list[Path]) -> None:
    found = over([str(p) for p in paths], kinds, progress=False)
    assert isinstance(found, pd.DataFrame)
    assert found.columns[0] == "trace"
    for path in paths:
        mine = found[found["trace"] == str(path)]
        with Trace.open(path) as trace:
            assert (
                dict(zip(mine["kind"], mine["events"], strict=True)) == trace_stats(trace).by_kind
            )
            assert int(mine["events"].sum()) == len(trace)


def test_structured_arrays_concatenate_with_a_trace_field(
    paths: list[Path], client: Client
) -> None:
    local = over(paths, envelope, progress=False)
    on_cluster = over(paths, envelope, client=client, progress=False)
    for found in (local, on_cluster):
        assert isinstance(found, np.ndarray)
        assert found.dtype.names == ("trace", "seq", "ts", "kind")
        start = 0
        for path in paths:
            with Trace.open(path) as trace:
                part = found[start : start + len(trace)]
                assert (part["trace"] == str(path)).all()
                for name in ("seq", "ts", "kind"):
                    assert (part[name] == trace.column(name)).all()
                start += len(trace)
        assert start == len(found)
    assert np.array_equal(local, on_cluster)


def test_progress_on_or_off_changes_nothing(
    paths: list[Path], client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = over(paths, fills, progress=False)
    assert capsys.readouterr().err == ""
    same_values(over(paths, fills, progress=True), quiet)
    assert "100%" in capsys.readouterr().err
    same_values(over(paths, fills, client=client, progress=True), quiet)
    assert "4/4" in capsys.readouterr().err


def test_an_unreadable_trace_is_named_with_why(
    paths: list[Path], client: Client, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-run"
    not_a_trace = tmp_path / "notes"
    not_a_trace.mkdir()
    given = [paths[0], missing, paths[1], not_a_trace]
    for where in ({}, {"client": client}):
        with pytest.raises(ProjectionFailed) as raised:
            over(given, fills, progress=False, **where)  # type: ignore[arg-type]
        message = str(raised.value)
        assert "2 trace(s)" in message
        assert f"{missing}: TraceNotFound" in message
        assert f"{not_a_trace}: NotATrace" in message
        assert [f.trace for f in raised.value.failures] == [str(missing), str(not_a_trace)]


def test_each_records_every_traces_outcome_so_failures_can_be_set_aside(
    paths: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "gone"
    outcomes = each([paths[0], missing, paths[1]], fills, progress=False)
    assert [o.trace for o in outcomes] == [str(paths[0]), str(missing), str(paths[1])]
    failed = outcomes[1].failure
    assert failed is not None and failed.error == "TraceNotFound" and str(missing) in failed.message
    assert "Traceback" in failed.details
    kept = concat([o for o in outcomes if o.failure is None])
    same_values(kept, plain_loop([paths[0], paths[1]]))


def test_a_projection_that_raises_is_a_failure_of_that_trace(paths: list[Path]) -> None:
    def picky(trace: Trace) -> list[dict[str, Any]]:
        if trace.path == paths[2]:
            raise RuntimeError("no fills wanted here")
        return fills(trace)

    with pytest.raises(ProjectionFailed, match=f"{paths[2]}: RuntimeError: no fills wanted here"):
        over(paths, picky, progress=False)


def test_the_processes_scheduler_gives_the_same_table(paths: list[Path]) -> None:
    same_values(
        over(paths[:2], fills, progress=False, scheduler="processes"), plain_loop(paths[:2])
    )


def test_results_of_other_sorts_are_refused_with_the_trace_named(paths: list[Path]) -> None:
    with pytest.raises(TypeError, match=f"{paths[0]}: a projection must return rows"):
        over(paths[:1], len, progress=False)
    with pytest.raises(ValueError, match="already has a 'trace' column"):
        concat([Outcome("t", part=[{"trace": "mine"}])])
    empty = concat([])
    assert isinstance(empty, pd.DataFrame) and list(empty.columns) == ["trace"]


def test_open_trace_is_read_only_and_opens_store_urls(paths: list[Path], tmp_path: Path) -> None:
    with open_trace(paths[0]) as trace:
        assert trace.mode == "r"
    with pytest.raises(TraceNotFound):
        open_trace(paths[0].parent / "nothing")
    # a sealed trace in a zip and in fsspec memory, run over by URL, as a local one
    sealed = tmp_path / "sealed"
    with Trace.open(sealed, "w", unit=64, record_chunk=16) as trace:
        trace.extend(synthetic.stream(64 * 3, seed=5))
    urls = [f"zip://{tmp_path / 'copy.zip'}", f"memory://many-tests/{uuid.uuid4().hex}"]
    for url in urls:
        export_body(LocalBody(sealed), sink_for(url))

    def kinds(trace: Trace) -> list[dict[str, Any]]:
        return [{"kind": e.kind, "seq": e.seq} for e in trace]

    local = over([sealed], kinds, progress=False)
    assert isinstance(local, pd.DataFrame)
    for url in urls:
        remote = over([url], kinds, progress=False)
        assert isinstance(remote, pd.DataFrame)
        assert list(remote["trace"].unique()) == [url]
        assert remote.drop(columns="trace").equals(local.drop(columns="trace"))
