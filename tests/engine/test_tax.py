"""Income-tax withholding on commission (engine/tax.py), with every amount computed by hand."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import config as engine_config
from engine.tax import (CUMULATIVE_BANDS, PER_PAYMENT_BANDS, TAX_METHODS, MonthIncome, TaxLine, Withholding,
                        cumulative_platform, per_payment, withhold)


def run_year(year: int, incomes: dict[int, str]) -> list[Withholding]:
    """Withhold month by month for the months in ``incomes``, feeding back what was withheld."""
    history: list[MonthIncome] = []
    results = []
    for month in sorted(incomes):
        w = cumulative_platform(year, month, D(incomes[month]), history)
        history.append(MonthIncome(year, month, w.income, w.tax))
        results.append(w)
    return results


# --- per_payment (2018年第61号) -------------------------------------------------------------

def test_published_example_3000():
    # 3,000 − 800 = 2,200 × 20% = 440.00
    w = per_payment(D("3000"))
    assert (w.taxable, w.rate, w.quick_deduction, w.tax) == (D("2200"), D("0.20"), D("0"), D("440.00"))
    assert (w.method, w.table_version) == ("per_payment", "per_payment/2018-61")


def test_published_example_30000():
    # 30,000 × 80% = 24,000 × 30% − 2,000 = 5,200.00
    w = per_payment(D("30000"))
    assert (w.taxable, w.rate, w.quick_deduction, w.tax) == (D("24000"), D("0.30"), D("2000"), D("5200.00"))


@pytest.mark.parametrize("income, taxable, rate, tax", [
    ("799.99", "0", "0.20", "0.00"),              # 799.99 − 800 < 0 → taxable 0
    ("800", "0", "0.20", "0.00"),                 # 800 − 800 = 0 → 0.00
    ("800.01", "0.01", "0.20", "0.00"),           # 0.01 × 20% = 0.002 → 0.00
    ("4000", "3200", "0.20", "640.00"),           # 4,000 − 800 = 3,200 × 20% = 640.00
    ("4000.01", "3200.008", "0.20", "640.00"),    # 4,000.01 × 80% = 3,200.008 × 20% = 640.0016 → 640.00
    ("25000", "20000", "0.20", "4000.00"),        # 25,000 × 80% = 20,000 × 20% = 4,000.00
    ("25000.01", "20000.008", "0.30", "4000.00"),  # 20,000.008 × 30% − 2,000 = 4,000.0024 → 4,000.00
    ("62500", "50000", "0.30", "13000.00"),       # 62,500 × 80% = 50,000 × 30% − 2,000 = 13,000.00
    ("62500.01", "50000.008", "0.40", "13000.00"),  # 50,000.008 × 40% − 7,000 = 13,000.0032 → 13,000.00
    ("100000", "80000", "0.40", "25000.00"),      # 80,000 × 40% − 7,000 = 25,000.00
])
def test_per_payment_band_boundaries(income, taxable, rate, tax):
    w = per_payment(D(income))
    assert (w.income, w.taxable, w.rate, w.tax) == (D(income), D(taxable), D(rate), D(tax))


def test_per_payment_rounds_half_up():
    # 800.025 − 800 = 0.025 × 20% = 0.005 → 0.01 (half-even would give 0.00)
    assert per_payment(D("800.025")).tax == D("0.01")
    # 0.0249 × 20% = 0.00498 → 0.00
    assert per_payment(D("800.0249")).tax == D("0.00")


@pytest.mark.parametrize("income", ["0", "0.00", "-150.30"])
def test_per_payment_no_income_no_tax(income):
    w = per_payment(D(income))
    assert (w.taxable, w.tax, w.rate, w.quick_deduction) == (0, 0, 0, 0)


def test_per_payment_statement_lines():
    w = per_payment(D("30000"))
    assert w.lines == (
        TaxLine("income", D("30000")),
        TaxLine("taxable: income 30,000.00 × 80%", D("24000")),
        TaxLine("tax: 24,000.00 × 30% − 2,000.00", D("5200.00")),
    )
    assert per_payment(D("4000.01")).lines[1].label == "taxable: income 4,000.01 × 80%"
    assert per_payment(D("4000.01")).lines[2].label == "tax: 3,200.008 × 20%"  # exact, not hidden


def test_per_payment_refuses_float():
    with pytest.raises(TypeError, match="Decimal"):
        per_payment(3000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        per_payment(D("NaN"))


# --- cumulative_platform (2025年第16号) -----------------------------------------------------

def test_published_example_three_months_of_10000():
    # month 1: 10,000 × 80% − 5,000 = 3,000 × 3% = 90
    # month 2: 20,000 × 80% − 10,000 = 6,000 × 3% = 180 − 90 = 90
    # month 3: 30,000 × 80% − 15,000 = 9,000 × 3% = 270 − 180 = 90
    results = run_year(2025, {1: "10000", 2: "10000", 3: "10000"})
    assert [w.tax for w in results] == [D("90.00")] * 3
    assert [w.months for w in results] == [1, 2, 3]
    assert [w.taxable for w in results] == [D("3000"), D("6000"), D("9000")]
    assert [w.cumulative_tax for w in results] == [D("90.00"), D("180.00"), D("270.00")]
    assert [w.withheld_before for w in results] == [D("0"), D("90.00"), D("180.00")]
    assert {(w.method, w.table_version) for w in results} == {("cumulative_platform", "cumulative_platform/2025-16")}


@pytest.mark.parametrize("income, taxable, rate, quick, tax", [
    ("51250", "36000", "0.03", "0", "1080.00"),          # 51,250 × 80% − 5,000 = 36,000 × 3% = 1,080.00
    ("51250.01", "36000.008", "0.10", "2520", "1080.00"),  # 36,000.008 × 10% − 2,520 = 1,080.0008 → 1,080.00
    ("186250", "144000", "0.10", "2520", "11880.00"),     # 186,250 × 80% − 5,000 = 144,000 × 10% − 2,520 = 11,880.00
    ("186250.01", "144000.008", "0.20", "16920", "11880.00"),  # 144,000.008 × 20% − 16,920 = 11,880.0016 → 11,880.00
    ("6250", "0", "0.03", "0", "0.00"),                  # 6,250 × 80% − 5,000 = 0
    ("5000", "0", "0.03", "0", "0.00"),                  # 4,000 − 5,000 < 0 → taxable 0
])
def test_cumulative_band_boundaries_in_one_month(income, taxable, rate, quick, tax):
    w = cumulative_platform(2025, 1, D(income), [])
    assert (w.taxable, w.rate, w.quick_deduction, w.tax, w.cumulative_tax) == (
        D(taxable), D(rate), D(quick), D(tax), D(tax))
    assert (w.months, w.cumulative_income, w.withheld_before) == (1, D(income), 0)


def test_cumulative_boundary_reached_across_months():
    # Jan: 20,000 × 80% − 5,000 = 11,000 × 3% = 330.00
    # Feb: 57,500 × 80% − 10,000 = 36,000 × 3% = 1,080.00 − 330 = 750.00
    jan, feb = run_year(2025, {1: "20000", 2: "37500"})
    assert (jan.tax, feb.taxable, feb.rate, feb.cumulative_tax, feb.tax) == (
        D("330.00"), D("36000"), D("0.03"), D("1080.00"), D("750.00"))


@pytest.mark.parametrize("bands", [PER_PAYMENT_BANDS, CUMULATIVE_BANDS], ids=["per_payment", "cumulative"])
def test_quick_deductions_make_the_tables_continuous(bands):
    # at each upper bound the next band's formula gives the same tax: no jump at any boundary
    for (upper, rate, quick), (_, next_rate, next_quick) in zip(bands, bands[1:]):
        assert upper * rate - quick == upper * next_rate - next_quick


def test_gap_month_restarts_the_consecutive_count():
    # Jan: 3,000 × 3% = 90
    # Mar (Feb had no income, run = 1): 20,000 × 80% − 5,000 = 11,000 × 3% = 330 − 90 = 240
    # Apr (run Mar–Apr = 2): 30,000 × 80% − 10,000 = 14,000 × 3% = 420 − 330 = 90
    jan, mar, apr = run_year(2025, {1: "10000", 3: "10000", 4: "10000"})
    assert [w.months for w in (jan, mar, apr)] == [1, 1, 2]
    assert [w.tax for w in (jan, mar, apr)] == [D("90.00"), D("240.00"), D("90.00")]


def test_recorded_zero_month_is_a_gap_too():
    history = [MonthIncome(2025, 1, D("10000"), D("90.00")), MonthIncome(2025, 2, D("0"), D("0"))]
    w = cumulative_platform(2025, 3, D("10000"), history)
    assert (w.months, w.tax) == (1, D("240.00"))  # as above


def test_new_tax_year_starts_from_zero():
    history = [MonthIncome(2024, m, D("10000"), D("90.00")) for m in range(1, 13)]
    # Jan 2025 alone: 10,000 × 80% − 5,000 = 3,000 × 3% = 90; December 2024 does not extend the run
    w = cumulative_platform(2025, 1, D("10000"), history)
    assert (w.months, w.cumulative_income, w.withheld_before, w.tax) == (1, D("10000"), 0, D("90.00"))


def test_lower_cumulative_tax_withholds_nothing_and_keeps_the_credit():
    # Jan: 20,000 × 80% − 5,000 = 11,000 × 3% = 330.00
    # Feb: 20,100 × 80% − 10,000 = 6,080 × 3% = 182.40 < 330 → 0 (credit 147.60, not refunded)
    # Mar: 30,100 × 80% − 15,000 = 9,080 × 3% = 272.40 < 330 → 0
    # Apr: 40,100 × 80% − 20,000 = 12,080 × 3% = 362.40 − 330 = 32.40
    jan, feb, mar, apr = run_year(2025, {1: "20000", 2: "100", 3: "10000", 4: "10000"})
    assert [w.cumulative_tax for w in (jan, feb, mar, apr)] == [D("330.00"), D("182.40"), D("272.40"), D("362.40")]
    assert [w.tax for w in (jan, feb, mar, apr)] == [D("330.00"), D("0.00"), D("0.00"), D("32.40")]
    assert [w.withheld_before for w in (feb, mar, apr)] == [D("330.00")] * 3
    assert "credit" in feb.lines[-1].label


def test_cumulative_rounds_half_up():
    # 6,251.875 × 80% − 5,000 = 1.5 × 3% = 0.045 → 0.05 (half-even would give 0.04)
    w = cumulative_platform(2025, 1, D("6251.875"), [])
    assert (w.taxable, w.tax) == (D("1.5"), D("0.05"))


def test_cumulative_negative_income_this_month():
    history = [MonthIncome(2025, 1, D("10000"), D("90.00"))]
    w = cumulative_platform(2025, 2, D("-500"), history)
    assert (w.taxable, w.tax, w.months, w.rate) == (0, 0, 0, 0)
    assert (w.cumulative_income, w.withheld_before) == (D("9500"), D("90.00"))


def test_negative_month_in_history_breaks_the_run_and_lowers_the_income():
    # Mar: (10,000 − 2,000 + 10,000) = 18,000 × 80% − 5,000 × 1 = 9,400 × 3% = 282 − 90 = 192.00
    jan, feb, mar = run_year(2025, {1: "10000", 2: "-2000", 3: "10000"})
    assert (jan.tax, feb.tax, mar.months, mar.tax) == (D("90.00"), D("0.00"), 1, D("192.00"))


def test_history_this_month_or_later_is_ignored_and_same_month_entries_are_summed():
    history = [MonthIncome(2025, 1, D("6000"), D("30.00")), MonthIncome(2025, 1, D("4000"), D("60.00")),
               MonthIncome(2025, 2, D("99999"), D("999.00")), MonthIncome(2025, 7, D("1"), D("1"))]
    # as the published example's month 2: 20,000 × 80% − 10,000 = 6,000 × 3% = 180 − 90 = 90
    w = cumulative_platform(2025, 2, D("10000"), history)
    assert (w.cumulative_income, w.months, w.withheld_before, w.tax) == (D("20000"), 2, D("90.00"), D("90.00"))


def test_cumulative_statement_lines():
    _, feb = run_year(2025, {1: "10000", 2: "10000"})
    assert [line.amount for line in feb.lines] == [
        D("10000"), D("20000"), D("10000"), D("6000"), D("180.00"), D("90.00"), D("90.00")]
    assert feb.lines[3].label == "cumulative taxable: 20,000.00 × 80% − 10,000.00"
    assert feb.lines[-1].label == "withheld this month: 180.00 − 90.00"


def test_cumulative_refuses_bad_month():
    with pytest.raises(ValueError, match="month"):
        cumulative_platform(2025, 13, D("1"), [])


# --- dispatch --------------------------------------------------------------------------------

def test_withhold_dispatches():
    assert withhold("per_payment", 2025, 3, D("3000"), []).tax == D("440.00")
    history = [MonthIncome(2025, 1, D("10000"), D("90.00"))]
    assert withhold("cumulative_platform", 2025, 2, D("10000"), history).tax == D("90.00")


def test_withhold_unknown_method_names_it():
    with pytest.raises(ValueError, match="'flat_rate'"):
        withhold("flat_rate", 2025, 1, D("100"), [])


def test_the_configuration_accepts_each_method_and_names_a_wrong_one():
    for method in TAX_METHODS:
        assert engine_config.parse_config({"tax": {"method": method}}).tax_method == method
    with pytest.raises(engine_config.ConfigError, match="tax.method"):
        engine_config.parse_config({"tax": {"method": "flat_rate"}})


# --- properties ------------------------------------------------------------------------------

money = st.decimals(min_value=D("-1000"), max_value=D("2000000"), places=2, allow_nan=False, allow_infinity=False)
month_income = st.one_of(st.just(D("0")), st.decimals(min_value=D("0.01"), max_value=D("300000"), places=2))


@settings(max_examples=300, deadline=None)
@given(money, money)
def test_per_payment_monotone_and_below_income(a, b):
    low, high = sorted((a, b))
    t_low, t_high = per_payment(low).tax, per_payment(high).tax
    assert 0 <= t_low <= t_high
    assert t_high <= max(high, D(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(month_income, min_size=12, max_size=12))
def test_cumulative_withheld_over_a_year_adds_up(incomes):
    results = run_year(2025, {m + 1: str(x) for m, x in enumerate(incomes)})
    total = sum((w.tax for w in results), D(0))
    taxed = [w for w in results if w.income > 0]
    # in general: withheld so far = the highest cumulative tax reached (excess is credit, not refund)
    assert total == max((w.cumulative_tax for w in taxed), default=D(0))
    # when no month's cumulative tax fell below what was already withheld: the last month's cumulative tax
    if all(w.cumulative_tax >= w.withheld_before for w in taxed):
        assert total == (taxed[-1].cumulative_tax if taxed else 0)
