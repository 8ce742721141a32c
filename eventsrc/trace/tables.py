"""The code tables: the names behind the small integer codes of the ``kind``, ``asset`` and
``source`` columns (kinds as name and schema version).

One class serves everyone who needs them: the writer, which gives a new name the next code as
it meets it; every reader; and the committer process, which both learn codes from the commit
marker (the sealed part) and from the definition records of the write-ahead segments (the rest).
Codes are never reused or changed: a table only grows.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from eventsrc.errors import TraceCorrupted, TraceError

__all__ = ["CodeTables", "Column", "Definition", "Table"]

Column = Literal["kind", "asset", "source"]


class Table(enum.IntEnum):
    """The three code tables, numbered as a definition record names them on disk."""

    KIND = 0
    ASSET = 1
    SOURCE = 2


MAX_KIND = 0xFFFF
"""Kind codes are uint16 and the largest value marks a definition record: codes stay below it."""
MAX_NAME = 2**32 - 1
"""Asset and source codes are uint32; the largest value is the columns' fill value."""


@attrs.frozen
class Definition:
    """One code table entry, as a definition record in the write-ahead segment gives it."""

    table: Table
    code: int
    name: str | None
    version: int = 0
    """The kind's schema version (kinds only)."""

    @property
    def value(self) -> Any:
        return (self.name, self.version) if self.table is Table.KIND else self.name


class CodeTables:
    """The three tables, with a code lookup per table."""

    def __init__(
        self,
        kinds: list[tuple[str, int]] | None = None,
        assets: list[str | None] | None = None,
        sources: list[str] | None = None,
    ) -> None:
        self.kinds: list[tuple[str, int]] = [] if kinds is None else kinds
        self.assets: list[str | None] = [None] if assets is None else assets
        self.sources: list[str] = [""] if sources is None else sources
        self.kind_codes = {k: i for i, k in enumerate(self.kinds)}
        self.asset_codes = {a: i for i, a in enumerate(self.assets)}
        self.source_codes = {s: i for i, s in enumerate(self.sources)}

    @classmethod
    def from_marker(cls, meta: Mapping[str, Any], where: str) -> CodeTables:
        """The tables recorded in a commit marker; TraceCorrupted (naming ``where``) if they
        are not tables."""
        try:
            kinds = [(n, v) for n, v in meta["kinds"]]
            assets = list(meta["assets"])
            sources = list(meta["sources"])
        except (KeyError, TypeError, ValueError):
            kinds, assets, sources = [], [], []
            ok = False
        else:
            ok = (
                all(isinstance(n, str) and type(v) is int for n, v in kinds)
                and all(a is None or isinstance(a, str) for a in assets)
                and all(isinstance(s, str) for s in sources)
            )
        if not ok:
            raise TraceCorrupted(f"{where}: the code tables (kinds, assets, sources) are damaged")
        return cls(kinds, assets, sources)

    def to_marker(self) -> dict[str, Any]:
        """The tables as the commit marker records them (JSON)."""
        return {
            "kinds": [[n, v] for n, v in self.kinds],
            "assets": list(self.assets),
            "sources": list(self.sources),
        }

    def names(self, column: Column) -> list[Any]:
        """A copy of one table, by the column it decodes."""
        return list(self._lists()[Table[column.upper()]])

    def _lists(self) -> tuple[list[Any], list[Any], list[Any]]:
        return self.kinds, self.assets, self.sources

    def _codes(self) -> tuple[dict[Any, int], dict[Any, int], dict[Any, int]]:
        return self.kind_codes, self.asset_codes, self.source_codes

    def learn(self, definition: Definition, where: str) -> None:
        """Take in a definition read back from the write-ahead segment ``where``: a new code
        extends its table; a known one must say what the table already says."""
        table = self._lists()[definition.table]
        value = definition.value
        if definition.code < len(table):
            if table[definition.code] != value:
                raise TraceCorrupted(
                    f"{where}: code {definition.code} of the {definition.table.name.lower()} "
                    f"table is defined as {value!r} but the trace already has "
                    f"{table[definition.code]!r}"
                )
        elif definition.code == len(table):
            table.append(value)
            self._codes()[definition.table][value] = definition.code
        else:
            raise TraceCorrupted(
                f"{where}: code {definition.code} of the {definition.table.name.lower()} table "
                "is defined out of order"
            )

    def define(self, table: Table, name: str | None, version: int = 0) -> Definition:
        """Give ``name`` (a kind: with its ``version``) the next code of ``table``."""
        values = self._lists()[table]
        code = len(values)
        if code >= (MAX_KIND if table is Table.KIND else MAX_NAME):
            raise TraceError(f"the {table.name.lower()} code table is full ({code} codes)")
        definition = Definition(table, code, name, version)
        values.append(definition.value)
        self._codes()[table][definition.value] = code
        return definition

    def mark(self) -> tuple[int, int, int]:
        """The tables' sizes, to ``forget`` what is defined after this."""
        return len(self.kinds), len(self.assets), len(self.sources)

    def forget(self, mark: tuple[int, int, int]) -> None:
        """Drop every code defined since ``mark`` (a batch that defined them failed)."""
        for values, codes, keep in zip(self._lists(), self._codes(), mark, strict=True):
            for value in values[keep:]:
                del codes[value]
            del values[keep:]
