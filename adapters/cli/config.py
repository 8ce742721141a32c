"""The ``eventsrc live`` config file: a TOML file naming the exchange, the markets and the
amount each rung of the Ladder trades, the main currency, margin or spot, the risk limits
(``eventsrc.Limits``), the trace's durability and path, and the NAMES of the environment
variables holding the keys (see ``examples/live.toml``).

``load_config`` reads it with ``tomllib`` (numbers as exact Decimals) and refuses anything
``live`` cannot use with a ``ConfigError``: one line naming the file, the line and the key
(``live.toml:10: limits.max_position: must be 0 or more, not -1``; tomllib keeps no
positions, so ``key_lines`` finds them in the text). A value of ``[keys]`` is never shown in
a message, in case a key was pasted there by mistake; a key in the file is refused, and so is
anything in ``[options]`` named like a credential. ``read_keys`` reads the keys from the
environment, naming every variable missing or empty, never a value.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import attrs
import ccxt
import ccxt.async_support
import ccxt.pro

from adapters.cli.common import CommandError
from adapters.venue import CREDENTIALS
from eventsrc import Durability, Limits

__all__ = [
    "ConfigError",
    "LiveConfig",
    "exchange_class",
    "key_lines",
    "load_config",
    "read_keys",
    "suggest",
]


def suggest(name: str, known: Sequence[str]) -> str:
    """`` (did you mean X, Y?)`` for the names in ``known`` close to ``name``, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def exchange_class(exchange_id: str) -> Any:
    """ccxt's async class for ``exchange_id``: ccxt.pro's (it streams) where there is one, else
    ccxt.async_support's. An unknown id is a CommandError suggesting close ones."""
    if exchange_id not in ccxt.exchanges:
        raise CommandError(
            f"no ccxt exchange {exchange_id!r}{suggest(exchange_id, ccxt.exchanges)}"
        )
    return getattr(ccxt.pro, exchange_id, None) or getattr(ccxt.async_support, exchange_id)


_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_DURABILITY: tuple[str, ...] = get_args(Durability)
_TOP = (
    "exchange",
    "live",
    "main_currency",
    "margin",
    "durability",
    "trace",
    "universe",
    "limits",
    "keys",
    "options",
)
_REQUIRED = ("exchange", "main_currency", "trace", "universe", "keys")
_LIMITS = {f.name: f for f in attrs.fields(Limits)}


class ConfigError(CommandError):
    """A config file the live command cannot use: one line, naming the file, the line and
    the key."""


@attrs.frozen
class LiveConfig:
    """What ``eventsrc live`` trades, as its TOML file says (see ``examples/live.toml``)."""

    path: Path
    exchange: str
    universe: dict[str, Decimal]
    """Each market and the amount one rung of the Ladder buys or sells."""
    main_currency: str
    trace: Path
    """Relative to the config file's directory."""
    keys: dict[str, str]
    """ccxt credential name -> the environment variable holding it (never the key)."""
    live: bool = False
    margin: bool = False
    durability: Durability = "sync"
    limits: Limits = attrs.Factory(Limits)
    options: dict[str, Any] = attrs.Factory(dict)
    """ccxt's ``options`` for the exchange (e.g. ``defaultType``)."""
    lines: Lines = attrs.Factory(dict)
    """Where each key is in the file, for later messages."""

    def where(self, *key: str) -> str:
        return _where(self.path, self.lines, *key)

    @property
    def mode(self) -> str:
        return "live" if self.live else "sandbox"


_BARE = r"[A-Za-z0-9_-]+|\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = re.compile(rf"\s*((?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*)\s*=")
_TABLE = re.compile(rf"\s*\[\s*((?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*)\s*\]")


def _parts(dotted: str) -> list[str]:
    return [
        p.strip()[1:-1] if p.strip()[:1] in "\"'" else p.strip()
        for p in re.findall(rf"{_BARE}", dotted)
    ]


Lines = dict[tuple[str, ...], int]


def key_lines(text: str) -> Lines:
    """The line (1-based) where each key of a TOML text is set, by its path: tables
    (``[limits]``), keys in them, dotted keys (``limits.max_position = 1``); a key of an
    inline table has its table's line. (tomllib keeps no positions; this reads the lines.)"""
    lines: Lines = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        header = _TABLE.match(line)
        if header is not None and not line.lstrip().startswith("[["):
            table = tuple(_parts(header.group(1)))
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is not None:
            path = (*table, *_parts(key.group(1)))
            for end in range(1, len(path) + 1):
                lines.setdefault(path[:end], number)
    return lines


def _where(path: Path, lines: Lines, *key: str) -> str:
    """``FILE:LINE: key`` (the line of the nearest enclosing key if the key's own is not
    known: a key of an inline table)."""
    shown = ".".join(_quoted(k) for k in key)
    for end in range(len(key), 0, -1):
        line = lines.get(key[:end])
        if line is not None:
            return f"{path}:{line}: {shown}"
    return f"{path}: {shown}"


def _syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found is None:
        return ConfigError(f"{path}: not valid TOML: {message}")
    what = message[: found.start()] + message[found.end() :]
    return ConfigError(f"{path}:{found.group(1)}:{found.group(2)}: not valid TOML: {what}")


def load_config(path: Path) -> LiveConfig:
    """Read and check a live config file: a ConfigError (one line: file, line, key, what is
    wrong) for anything ``eventsrc live`` cannot use. Checks the exchange id against ccxt, but
    neither the environment nor the network."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(path, exc) from None
    lines = key_lines(text)

    def fail(key: tuple[str, ...], problem: str) -> ConfigError:
        return ConfigError(f"{_where(path, lines, *key)}: {problem}")

    def unknown(table: Mapping[str, Any], known: Sequence[str], *within: str) -> None:
        extra = sorted(
            (k for k in table if k not in known), key=lambda k: lines.get((*within, k), 0)
        )
        if extra:
            name = extra[0]
            where = f" in [{'.'.join(within)}]" if within else ""
            raise fail(
                (*within, name),
                f"unknown key{where}{suggest(name, known)}; known: {', '.join(known)}",
            )

    def text_of(key: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise fail((key,), f"must be a non-empty string, not {_shown(value)}")
        return value.strip()

    def flag(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail((key,), f"must be true or false, not {_shown(value)}")
        return value

    def table_of(key: str, value: Any, *, secret: bool = False) -> dict[str, Any]:
        if not isinstance(value, dict):
            # where a key may have been pasted, the value's type only
            shown = _shown(value, show=not secret)
            raise fail((key,), f"must be a table ([{key}]), not {shown}")
        return value

    def number(key: tuple[str, ...], value: Any, *, positive: bool) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise fail(key, f"must be a number, not {_shown(value)}")
        try:
            found = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
        except ArithmeticError:
            raise fail(key, f"must be a number, not {_shown(value)}") from None
        if not found.is_finite():
            raise fail(key, f"must be a finite number, not {found}")
        if positive and found <= 0:
            raise fail(key, f"must be more than 0, not {found}")
        if found < 0:
            raise fail(key, f"must be 0 or more, not {found}")
        return found

    unknown(data, _TOP)
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{path}: missing {key} (see examples/live.toml)")
    exchange = text_of("exchange", data["exchange"])
    if exchange not in ccxt.exchanges:
        raise fail(
            ("exchange",),
            f"no ccxt exchange {exchange!r}{suggest(exchange, ccxt.exchanges)}",
        )
    durability = data.get("durability", "sync")
    if durability not in _DURABILITY:
        raise fail(
            ("durability",),
            f"must be one of {', '.join(_DURABILITY)}, not {_shown(durability)}",
        )

    universe_table = table_of("universe", data["universe"])
    if not universe_table:
        raise fail(("universe",), "is empty: name at least one market and its amount per rung")
    universe = {
        symbol: number(("universe", symbol), amount, positive=True)
        for symbol, amount in universe_table.items()
    }

    limits_table = table_of("limits", data.get("limits", {}))
    unknown(limits_table, list(_LIMITS), "limits")
    limits: dict[str, Any] = {}
    for name, value in limits_table.items():
        if name == "max_open_orders":
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(("limits", name), f"must be a whole number, not {_shown(value)}")
            if value < 0:
                raise fail(("limits", name), f"must be 0 or more, not {value}")
            limits[name] = value
        else:
            limits[name] = number(("limits", name), value, positive=False)

    keys_table = table_of("keys", data["keys"], secret=True)
    unknown(keys_table, CREDENTIALS, "keys")
    keys: dict[str, str] = {}
    for name, value in keys_table.items():
        # never shown: a key pasted here by mistake must not reach a message
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            raise fail(
                ("keys", name),
                "must be the NAME of an environment variable (capitals, digits and _), "
                "not a key: keys are read from the environment only",
            )
        keys[name] = value
    needed = exchange_class(exchange)().requiredCredentials or {}
    for name, required in needed.items():
        if not required or name in keys:
            continue
        if name in CREDENTIALS:
            raise fail(
                ("keys",), f"{exchange} needs {name}: name the environment variable holding it"
            )
        raise fail(("keys",), f"{exchange} needs {name}, which eventsrc live cannot pass yet")

    options = table_of("options", data.get("options", {}), secret=True)
    secret = _credential_in(options)
    if secret is not None:
        raise fail(
            ("options", *secret),
            "credentials come from the environment only: name its variable in [keys]",
        )

    return LiveConfig(
        path=path,
        exchange=exchange,
        universe=universe,
        main_currency=text_of("main_currency", data["main_currency"]),
        trace=path.parent / text_of("trace", data["trace"]),
        keys=keys,
        live=flag("live", data.get("live", False)),
        margin=flag("margin", data.get("margin", False)),
        durability=durability,
        limits=Limits(**limits),
        options=_plain(options),
        lines=lines,
    )


def _shown(value: Any, *, show: bool = True) -> str:
    """A value for a message: its TOML type, and the value itself if it is short (and
    ``show``)."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        Decimal: "a number",
        str: "a string",
        dict: "a table",
        list: "an array",
    }.get(type(value), type(value).__name__)
    if not show or isinstance(value, dict | list):
        return kind
    shown = json.dumps(value) if isinstance(value, str | bool) else str(value)
    return f"{kind} ({shown})" if len(shown) <= 40 else kind


def _quoted(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


_SECRET_WORDS = ("secret", "apikey", "api_key", "password", "privatekey", "private_key", "token")


def _credential_in(table: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The path of a key in ``table`` that looks like a credential, if one does."""
    lowered = {c.lower() for c in CREDENTIALS}
    for key, value in table.items():
        name = key.lower()
        if name in lowered or any(word in name for word in _SECRET_WORDS):
            return (key,)
        if isinstance(value, dict):
            found = _credential_in(value)
            if found is not None:
                return (key, *found)
    return None


def _plain(value: Any) -> Any:
    """TOML's values as ccxt takes them: numbers as floats or ints, not Decimals."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


def read_keys(config: LiveConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The keys from the environment variables the config names; a ConfigError naming every
    variable that is not set or is empty (and never a value)."""
    found: dict[str, str] = {}
    problems = []
    for name, variable in config.keys.items():
        value = environ.get(variable)
        if value is None:
            problems.append(f"{variable} ({name}) is not set")
        elif not value.strip():
            problems.append(f"{variable} ({name}) is empty")
        else:
            found[name] = value.strip()
    if problems:
        raise ConfigError(
            f"{config.where('keys')}: {', '.join(problems)}: export the keys first "
            "(they are read from the environment only)"
        )
    return found
