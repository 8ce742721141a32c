"""The ccxt venue adapter: ccxt's structures as events, ccxt's exceptions as venue errors,
every ``CcxtVenue`` call over the simulated exchange and over real ccxt classes offline, and
the exchange's secrets kept out of every event, error and log line."""

from __future__ import annotations

import decimal
from decimal import Decimal

from adapters.observations import order_observed, to_decimal
from eventsrc import Fee

D = Decimal


# -- ccxt structures -> events ----------------------------------------------------------------


def test_to_decimal_takes_numpy_scalars_as_their_python_equivalents() -> None:
    import numpy as np

    assert to_decimal(np.float64(0.1)) == D("0.1")
    assert to_decimal(np.int64(7)) == D(7)
    assert to_decimal(np.float32(0.5)) == D("0.5")
    assert to_decimal(np.bool_(True)) is None


def test_ccxt_fees_are_summed_exactly_whatever_the_callers_decimal_context() -> None:
    order = {
        "id": "1",
        "fees": [
            {"cost": "0.1234567", "currency": "BNB"},
            {"cost": "0.0000001", "currency": "BNB"},
        ],
    }
    with decimal.localcontext(decimal.Context(prec=3)):
        fees = order_observed(order).fees
    assert fees == (Fee("BNB", D("0.1234568")),)
