"""Individual income tax withheld on promoters' commission (劳务报酬所得), by ``tax.method``.

Two methods, each a pure function of Decimal amounts (no I/O, no clock, never float):

* ``per_payment`` — 国家税务总局公告2018年第61号 (预扣预缴): a month's income from one payer is
  one payment, taxed on its own with the 20/30/40% labour-remuneration table.
* ``cumulative_platform`` — 国家税务总局公告2025年第16号 (income via an internet platform):
  cumulative within the calendar year per payer and payee, with the annual 3%…45% table and a
  5,000/month deduction for the run of consecutive months with income.

Intermediate values are exact; only the tax is rounded (half-up to 0.01), once, where it is
computed. Every :class:`Withholding` names its method and table version, so a statement issued
today can be reproduced after the tables change, and carries the computation line by line.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from engine.money import ZERO, cents

TAX_METHODS = ("per_payment", "cumulative_platform")

PER_PAYMENT_VERSION = "per_payment/2018-61"
CUMULATIVE_PLATFORM_VERSION = "cumulative_platform/2025-16"

# (upper bound of taxable, inclusive, or None for "above"; rate; quick deduction)
_Band = tuple[Decimal | None, Decimal, Decimal]

# 2018年第61号: labour remuneration, per payment.
PER_PAYMENT_BANDS: tuple[_Band, ...] = (
    (Decimal("20000"), Decimal("0.20"), Decimal("0")),
    (Decimal("50000"), Decimal("0.30"), Decimal("2000")),
    (None, Decimal("0.40"), Decimal("7000")),
)
PER_PAYMENT_FIXED_DEDUCTION = Decimal("800")   # income ≤ 4,000
PER_PAYMENT_FIXED_LIMIT = Decimal("4000")
INCOME_SHARE = Decimal("0.8")                  # 收入额 = 收入 × (1 − 20%)

# 2025年第16号: the annual comprehensive-income table, applied cumulatively.
CUMULATIVE_BANDS: tuple[_Band, ...] = (
    (Decimal("36000"), Decimal("0.03"), Decimal("0")),
    (Decimal("144000"), Decimal("0.10"), Decimal("2520")),
    (Decimal("300000"), Decimal("0.20"), Decimal("16920")),
    (Decimal("420000"), Decimal("0.25"), Decimal("31920")),
    (Decimal("660000"), Decimal("0.30"), Decimal("52920")),
    (Decimal("960000"), Decimal("0.35"), Decimal("85920")),
    (None, Decimal("0.45"), Decimal("181920")),
)
MONTHLY_DEDUCTION = Decimal("5000")


@dataclass(frozen=True)
class TaxLine:
    """One line of the computation, as the payee's statement shows it.

    ``label`` carries the arithmetic in words ("income 30,000.00 × 80%"); ``amount`` is its exact
    result, so a reader (or a test) can re-add the lines without parsing the label.
    """

    label: str
    amount: Decimal


@dataclass(frozen=True)
class Withholding:
    """The tax withheld for one period from one payer to one payee, and how it was reached.

    ``taxable`` is this month's taxable amount for ``per_payment`` and the *cumulative* taxable
    amount for ``cumulative_platform`` (the amount the rate applies to, either way). The
    cumulative fields are zero for ``per_payment``, where nothing accumulates.
    """

    method: str
    table_version: str
    income: Decimal
    taxable: Decimal
    rate: Decimal
    quick_deduction: Decimal
    tax: Decimal
    lines: tuple[TaxLine, ...]
    cumulative_income: Decimal = ZERO
    months: int = 0
    cumulative_tax: Decimal = ZERO
    withheld_before: Decimal = ZERO


@dataclass(frozen=True)
class MonthIncome:
    """One earlier month of one payer→payee relation: income paid and tax actually withheld.

    ``withheld`` must be what was really withheld (not what the table said), because a month whose
    cumulative tax fell below it withheld nothing and carries the difference forward as a credit.
    """

    year: int
    month: int
    income: Decimal
    withheld: Decimal


def _amount(x: object, name: str) -> Decimal:
    """Refuse floats (and anything not an exact, finite Decimal): money must never be binary."""
    if not isinstance(x, Decimal):
        raise TypeError(f"{name} must be a Decimal, not {type(x).__name__}")
    if not x.is_finite():
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def _month(year: int, month: int, name: str) -> None:
    if not isinstance(month, int) or isinstance(month, bool) or not 1 <= month <= 12:
        raise ValueError(f"{name}: month must be 1..12, got {month!r}")
    if not isinstance(year, int) or isinstance(year, bool):
        raise ValueError(f"{name}: year must be an int, got {year!r}")


def _band(taxable: Decimal, bands: tuple[_Band, ...]) -> tuple[Decimal, Decimal]:
    """Rate and quick deduction of the band holding ``taxable`` (upper bounds inclusive)."""
    for upper, rate, quick in bands:
        if upper is None or taxable <= upper:
            return rate, quick
    raise AssertionError("the last band is open-ended")  # pragma: no cover


def _fmt(x: Decimal) -> str:
    """Thousands separators and at least two decimals, but never hide an exact sub-cent digit."""
    exp = x.normalize().as_tuple().exponent
    places = max(2, -exp) if isinstance(exp, int) else 2
    return f"{x:,.{places}f}"


def _pct(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def _tax_line(taxable: Decimal, rate: Decimal, quick: Decimal, what: str) -> tuple[Decimal, TaxLine]:
    """Rate × taxable − quick deduction, rounded half-up once, never negative."""
    tax = max(ZERO, cents(taxable * rate - quick))
    label = f"{what}: {_fmt(taxable)} × {_pct(rate)}"
    if quick:
        label += f" − {_fmt(quick)}"
    return tax, TaxLine(label, tax)


def per_payment(income: Decimal) -> Withholding:
    """Withholding on one month's income from one payer as a single payment (2018年第61号).

    Zero or negative income (a month whose clawbacks exceed its commission) withholds nothing:
    there is nothing to tax, and this method has no later month to carry a credit to.
    """
    income = _amount(income, "income")
    lines = [TaxLine("income", income)]
    if income <= 0:
        lines.append(TaxLine("no income this month: taxable", ZERO))
        return Withholding("per_payment", PER_PAYMENT_VERSION, income, ZERO, ZERO, ZERO, ZERO, tuple(lines))
    if income <= PER_PAYMENT_FIXED_LIMIT:
        taxable = max(ZERO, income - PER_PAYMENT_FIXED_DEDUCTION)
        lines.append(TaxLine(f"taxable: income {_fmt(income)} − {_fmt(PER_PAYMENT_FIXED_DEDUCTION)}"
                             + (" (not below 0)" if income < PER_PAYMENT_FIXED_DEDUCTION else ""), taxable))
    else:
        taxable = income * INCOME_SHARE
        lines.append(TaxLine(f"taxable: income {_fmt(income)} × {_pct(INCOME_SHARE)}", taxable))
    rate, quick = _band(taxable, PER_PAYMENT_BANDS)
    tax, line = _tax_line(taxable, rate, quick, "tax")
    lines.append(line)
    return Withholding("per_payment", PER_PAYMENT_VERSION, income, taxable, rate, quick, tax, tuple(lines))


def cumulative_platform(year: int, month: int, income: Decimal, history: Sequence[MonthIncome]) -> Withholding:
    """Withholding for ``year``-``month`` by the platform's cumulative method (2025年第16号).

    ``history`` may span years and hold several entries per month (they are summed); only this
    year's months before ``month`` count — earlier years because each tax year starts from zero,
    this month and later because the current month's income is ``income``, not history.

    The deduction is 5,000 × the run of consecutive months with income > 0 ending this month; a
    month without income breaks the run. Withheld = cumulative tax − tax actually withheld before,
    never negative: an excess already withheld is not refunded but lowers later months.
    """
    _month(year, month, "cumulative_platform")
    income = _amount(income, "income")
    earlier_income: dict[int, Decimal] = {}
    withheld_before = ZERO
    for h in history:
        _month(h.year, h.month, "history")
        h_income = _amount(h.income, f"history {h.year}-{h.month:02d} income")
        h_withheld = _amount(h.withheld, f"history {h.year}-{h.month:02d} withheld")
        if h.year == year and h.month < month:
            earlier_income[h.month] = earlier_income.get(h.month, ZERO) + h_income
            withheld_before += h_withheld
    cumulative_income = sum(earlier_income.values(), ZERO) + income

    lines = [TaxLine("income this month", income),
             TaxLine(f"cumulative income {year} (months 1–{month})", cumulative_income)]
    if income <= 0:
        lines.append(TaxLine("no income this month: taxable", ZERO))
        lines.append(TaxLine(f"already withheld {year} (carried forward)", withheld_before))
        return Withholding("cumulative_platform", CUMULATIVE_PLATFORM_VERSION, income, ZERO, ZERO, ZERO, ZERO,
                           tuple(lines), cumulative_income, 0, ZERO, withheld_before)

    months = 1
    while month - months >= 1 and earlier_income.get(month - months, ZERO) > 0:
        months += 1
    deduction = MONTHLY_DEDUCTION * months
    taxable = max(ZERO, cumulative_income * INCOME_SHARE - deduction)
    lines.append(TaxLine(f"deduction: {_fmt(MONTHLY_DEDUCTION)} × {months} consecutive month"
                         + ("s" if months != 1 else ""), deduction))
    lines.append(TaxLine(f"cumulative taxable: {_fmt(cumulative_income)} × {_pct(INCOME_SHARE)} − {_fmt(deduction)}"
                         + (" (not below 0)" if cumulative_income * INCOME_SHARE < deduction else ""), taxable))
    rate, quick = _band(taxable, CUMULATIVE_BANDS)
    cumulative_tax, line = _tax_line(taxable, rate, quick, "cumulative tax")
    lines.append(line)
    lines.append(TaxLine(f"already withheld {year}", withheld_before))
    tax = max(ZERO, cumulative_tax - withheld_before)
    lines.append(TaxLine(f"withheld this month: {_fmt(cumulative_tax)} − {_fmt(withheld_before)}"
                         + (" (not below 0; the excess stays as a credit)" if cumulative_tax < withheld_before else ""),
                         tax))
    return Withholding("cumulative_platform", CUMULATIVE_PLATFORM_VERSION, income, taxable, rate, quick, tax,
                       tuple(lines), cumulative_income, months, cumulative_tax, withheld_before)


def withhold(method: str, year: int, month: int, income: Decimal, history: Sequence[MonthIncome]) -> Withholding:
    """Dispatch on the configured ``tax.method``; ``per_payment`` ignores the date and history."""
    if method == "per_payment":
        return per_payment(income)
    if method == "cumulative_platform":
        return cumulative_platform(year, month, income, history)
    raise ValueError(f"unknown tax method {method!r}; expected one of {', '.join(TAX_METHODS)}")
