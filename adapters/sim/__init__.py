"""The embedded default venue: a deterministic simulated exchange that speaks ccxt.

``SimExchange`` has the async method names, signatures and return shapes of ccxt's unified
API for everything the live engine uses, raises ccxt's exception classes, and runs on a
virtual clock by default, so tests, benchmarks and the demo need no network and no keys.
"""

from adapters.sim.clock import RealClock, SimClock, VirtualClock
from adapters.sim.exchange import Faults, SimExchange, Truth
from adapters.sim.markets import (
    DEFAULT_MARKETS,
    OHLCVPath,
    PricePath,
    RandomWalk,
    linear_perpetual,
    spot,
)

__all__ = [
    "DEFAULT_MARKETS",
    "Faults",
    "OHLCVPath",
    "PricePath",
    "RandomWalk",
    "RealClock",
    "SimClock",
    "SimExchange",
    "Truth",
    "VirtualClock",
    "linear_perpetual",
    "spot",
]
