"""Money arithmetic: Decimal only, rounded half-up to the cent once, on the exact product."""
from __future__ import annotations

import decimal
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

# price × qty × rate × refund share can pass the default 28 significant digits at the extremes
# the schema allows; 60 keeps every product exact, so rounding happens once, where we say.
decimal.DefaultContext.prec = 60
decimal.getcontext().prec = 60

CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def cents(x: Decimal) -> Decimal:
    """Round half-up to 0.01 (contract §3). Negative values round symmetrically."""
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def floor_cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_DOWN)


def spread(total: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Split ``total`` over ``weights`` in proportion, to the cent, summing exactly to ``total``.

    Largest remainder: each share is floored, then the left-over cents go to the largest
    fractional parts (earlier position first on ties). Used for order-level refunds.
    """
    whole = sum(weights, Decimal(0))
    if whole == 0:
        return [ZERO for _ in weights]
    exact = [total * w / whole for w in weights]
    shares = [floor_cents(e) for e in exact]
    left = int((total - sum(shares, Decimal(0))) / CENT)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[:left]:
        shares[i] += CENT
    return shares
