"""tuike.yaml (contract §2): the example loads; every refusal names the file, line and key path."""
from __future__ import annotations

import textwrap
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml

from engine.config import DEFAULT, parse_config
from tuike.configfile import ConfigFileError, check_config_file, line_of, load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tuike.example.yaml"


def _file(tmp_path: Path, text: str, name: str = "tuike.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _check(tmp_path: Path, text: str) -> list[str]:
    """The lines `tuike config check` prints for a file that must fail, with the tmp dir removed."""
    path = _file(tmp_path, text)
    ok, lines = check_config_file(path)
    assert not ok, lines
    return [line.removeprefix(f"{tmp_path}/") for line in lines]


# --- the example -------------------------------------------------------------------------


def test_example_file_loads_with_the_contract_values() -> None:
    config = load_config(EXAMPLE)
    assert config.currency == "CNY" and config.timezone == "Asia/Shanghai"
    assert (config.binding_mode, config.valid_days, config.attribution, config.click_window_days) == ("first", 365, "binding", 7)
    assert config.levels == (D("0.10"), D("0.05"), D("0.02"))
    assert (config.max_levels, config.payout_cap) == (3, D("0.30"))
    assert [(r.id, r.category, r.sku, r.levels, r.fixed) for r in config.rules] == [
        ("digital-goods", "digital", None, (D("0.15"), D("0.05")), None),
        ("flagship-fixed", None, "SKU-0001", None, (D("5.00"), D("2.00"))),
    ]
    (campaign,) = config.campaigns
    assert (campaign.id, campaign.multiplier) == ("double-11", D("1.2"))
    assert campaign.to_ms - campaign.from_ms == 2 * 86_400_000
    assert [(t.min_gmv, t.bonus) for t in config.tiers] == [(D("10000"), D("0.01")), (D("50000"), D("0.02"))]
    assert (config.hold_days, config.tax_method, config.fraud.hold_score) == (7, "per_payment", D("0.8"))


def test_example_file_passes_config_check() -> None:
    ok, lines = check_config_file(EXAMPLE)
    assert ok and lines == [f"{EXAMPLE}: OK (levels 0.10/0.05/0.02, payout_cap 0.30, 2 rules, 1 campaigns, 2 tiers)"]


def test_no_path_uses_tuike_yaml_in_the_working_directory_else_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None) == DEFAULT
    _file(tmp_path, 'commission:\n  levels: ["0.08"]\n')
    assert load_config(None).levels == (D("0.08"),)
    _file(tmp_path, "hold_days: -1\n")
    with pytest.raises(ConfigFileError) as err:
        load_config(None)
    assert err.value.message_lines == ["tuike.yaml:1: hold_days: expected a whole number ≥ 0, got -1"]


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(_file(tmp_path, "# nothing set yet\n")) == DEFAULT


def test_env_values_are_kept_as_written(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, """
        shops:
          shop-1: {shopify_secret: "env:SHOPIFY_SECRET", events_secret: env:EVENTS}
    """))
    assert config.raw["shops"]["shop-1"] == {"shopify_secret": "env:SHOPIFY_SECRET", "events_secret": "env:EVENTS"}


# --- compliance refusals, with path and line ---------------------------------------------


def test_four_levels(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        currency: CNY
        commission:
          levels: ["0.10", "0.05", "0.02", "0.01"]
    """) == ["tuike.yaml:3: commission.levels: 4 levels configured; at most 3 levels of commission are allowed (禁止传销条例)"]


def test_four_levels_in_a_rule(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          rules:
            - id: a
              when: {category: digital}
              levels: ["0.05"]
            - id: b
              when: {sku: X}
              fixed:
                - "1.00"
                - "1.00"
                - "1.00"
                - "1.00"
    """) == ["tuike.yaml:8: commission.rules[1].fixed: 4 levels configured; at most 3 levels of commission are allowed (禁止传销条例)"]


def test_max_levels_4(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: ["0.10", "0.05", "0.02"]
          max_levels: 4
    """) == ["tuike.yaml:3: commission.max_levels: 4 is above the compliance ceiling of 3 levels (禁止传销条例)"]


def test_tier_on_team_volume(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          tiers: [{team_gmv: "10000", bonus: "0.01"}]
    """) == [
        "tuike.yaml:2: commission.tiers[0].team_gmv: tiers are based on the promoter's own sales only; 'team_gmv' is not allowed (团队计酬)",
        "tuike.yaml:2: commission.tiers[0].min_gmv: expected a decimal string, got None",
    ]


def test_tier_on_team_volume_block_style_names_each_line(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          tiers:
            - min_gmv: "10000"
              bonus: "0.01"
            - downline_gmv: "50000"
              min_gmv: "50000"
              bonus: "0.02"
    """) == ["tuike.yaml:5: commission.tiers[1].downline_gmv: tiers are based on the promoter's own sales only; 'downline_gmv' is not allowed (团队计酬)"]


def test_team_keys_anywhere_are_refused(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: ["0.10"]
          team_bonus: "0.01"
        team_override: true
    """) == [
        "tuike.yaml:3: commission.team_bonus: team compensation (团队计酬) is not allowed: commission comes from a promoter's own sales only",
        "tuike.yaml:4: team_override: team compensation (团队计酬) is not allowed: commission comes from a promoter's own sales only",
    ]


def test_rates_over_the_cap_only_with_the_largest_campaign(tmp_path: Path) -> None:
    base = """
        commission:
          levels: ["0.15", "0.08", "0.05"]   # 0.28 alone is within the cap
          campaigns:
            - id: small
              from: "2026-06-01T00:00:00+08:00"
              to: "2026-06-02T00:00:00+08:00"
              multiplier: "1.05"
    """
    assert load_config(_file(tmp_path, base)).levels == (D("0.15"), D("0.08"), D("0.05"))  # 0.294
    assert _check(tmp_path, base + """
            - id: double-11
              from: "2026-11-10T00:00:00+08:00"
              to: "2026-11-12T00:00:00+08:00"
              multiplier: "1.2"
    """) == ["tuike.yaml:2: commission.levels: rates 0.15+0.08+0.05 × largest campaign multiplier 1.2"
             " + largest tier bonus 0 = 0.336 exceeds payout_cap 0.30"]


def test_rule_over_the_cap_with_tier_bonus(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          rules:
            - id: fixed-one
              when: {sku: A}
              fixed: ["100.00"]
            - id: digital
              when: {category: digital}
              levels: ["0.20", "0.05"]
          tiers:
            - {min_gmv: "10000", bonus: "0.06"}
    """) == ["tuike.yaml:8: commission.rules[1].levels: rates 0.20+0.05 × largest campaign multiplier 1"
             " + largest tier bonus 0.06 = 0.31 exceeds payout_cap 0.30"]


def test_float_rates(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: [0.10, 0.05, "0.02"]
          payout_cap: 0.30
    """) == [
        'tuike.yaml:2: commission.levels[0]: write money and rates as quoted decimal strings ("0.1"), not floats',
        'tuike.yaml:2: commission.levels[1]: write money and rates as quoted decimal strings ("0.05"), not floats',
        'tuike.yaml:3: commission.payout_cap: write money and rates as quoted decimal strings ("0.3"), not floats',
    ]


def test_several_problems_are_all_listed_in_file_order(tmp_path: Path) -> None:
    lines = _check(tmp_path, """
        currency: yuan
        binding:
          mode: sticky
        hold_days: -3
        commission:
          levels: ["0.20", "0.10", "0.05"]
          max_levels: 4
          campaigns:
            - id: d11
              from: "2026-11-10T00:00:00"
              to: "2026-11-12T00:00:00+08:00"
              multiplier: "1.5"
          tiers:
            - {team_gmv: "10000", bonus: "0.01"}
        tax:
          method: yearly
        fraud:
          hold_score: 0.8
    """)
    assert lines == [
        "tuike.yaml:1: currency: expected an ISO 4217 code such as CNY, got 'yuan'",
        "tuike.yaml:3: binding.mode: 'sticky' is not one of first, override, new_customer_only",
        "tuike.yaml:4: hold_days: expected a whole number ≥ 0, got -3",
        "tuike.yaml:7: commission.max_levels: 4 is above the compliance ceiling of 3 levels (禁止传销条例)",
        "tuike.yaml:10: commission.campaigns[0].from: timestamp needs a UTC offset: '2026-11-10T00:00:00'",
        "tuike.yaml:14: commission.tiers[0].team_gmv: tiers are based on the promoter's own sales only; 'team_gmv' is not allowed (团队计酬)",
        "tuike.yaml:14: commission.tiers[0].min_gmv: expected a decimal string, got None",
        "tuike.yaml:16: tax.method: 'yearly' is not one of per_payment, cumulative_platform",
        'tuike.yaml:18: fraud.hold_score: write money and rates as quoted decimal strings ("0.8"), not floats',
    ]


def test_cap_breach_is_listed_next_to_other_problems(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        hold_days: -1
        commission:
          levels: ["0.20", "0.10", "0.05"]
    """) == [
        "tuike.yaml:1: hold_days: expected a whole number ≥ 0, got -1",
        "tuike.yaml:3: commission.levels: rates 0.20+0.10+0.05 × largest campaign multiplier 1"
        " + largest tier bonus 0 = 0.35 exceeds payout_cap 0.30",
    ]


def test_no_cap_message_about_rates_that_did_not_parse(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: ["0.20", "0.10", "x"]
          payout_cap: "0.1"
          rules:
            - {id: r, levels: ["0.2"], fixed: ["1.00"]}
            - {id: s, levels: ["0.25"]}
    """) == [
        "tuike.yaml:2: commission.levels[2]: not a decimal number: 'x'",
        "tuike.yaml:5: commission.rules[0]: a rule gives either levels (rates) or fixed (amounts per unit), exactly one",
        "tuike.yaml:6: commission.rules[1].levels: rates 0.25 × largest campaign multiplier 1"
        " + largest tier bonus 0 = 0.25 exceeds payout_cap 0.1",
    ]


def test_lists_that_are_not_lists(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          rules: digital
          campaigns: {id: x}
    """) == [
        "tuike.yaml:2: commission.rules: expected a list, got str",
        "tuike.yaml:3: commission.campaigns: expected a list, got dict",
    ]


def test_campaign_without_dates(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          campaigns:
            - id: x
              multiplier: "1.1"
    """) == [
        'tuike.yaml:3: commission.campaigns[0].from: required: an RFC 3339 timestamp such as "2026-11-10T00:00:00+08:00"',
        'tuike.yaml:3: commission.campaigns[0].to: required: an RFC 3339 timestamp such as "2026-11-10T00:00:00+08:00"',
    ]


def test_unquoted_yaml_timestamps_with_offset_are_understood(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, """
        commission:
          campaigns:
            - {id: x, from: 2026-11-10T00:00:00+08:00, to: 2026-11-12T00:00:00+08:00, multiplier: "1.1"}
    """))
    assert config.campaigns[0].from_ms == 1794240000000


def test_top_level_tiers_are_reported_where_they_are(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: ["0.10"]
        tiers:
          - {min_gmv: "10000", bonus: 0.01}
    """) == ['tuike.yaml:4: tiers[0].bonus: write money and rates as quoted decimal strings ("0.01"), not floats']


def test_tiers_given_twice(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        tiers: []
        commission:
          tiers: []
    """) == ["tuike.yaml:1: tiers: tiers are given twice, here and under commission; keep one list"]


# --- file-level problems -----------------------------------------------------------------


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    assert _check(tmp_path, """
        commission:
          levels: ["0.10", "0.05", "0.02"]
          payout_cap: "0.30"
          levels: ["0.25", "0.05"]
    """) == ['tuike.yaml:4: commission.levels: key written twice (first on line 2); YAML would silently keep only this one']


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    lines = _check(tmp_path, """
        currency: CNY
        commission:
          levels: ["0.10", "0.05"
          max_levels: 3
    """)
    assert len(lines) == 1 and lines[0].startswith("tuike.yaml:4: YAML syntax error (column 3): ")


def test_tab_indentation_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tuike.yaml"
    path.write_text("currency: CNY\ncommission:\n\tlevels: []\n")
    ok, lines = check_config_file(path)
    assert not ok and lines == [f"{path}:3: YAML syntax error (column 1): found character '\\t' that cannot start any token, while scanning for the next token"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert _check(tmp_path, "- a\n- b\n") == ["tuike.yaml:1: (top): the configuration must be a YAML mapping"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as err:
        load_config(tmp_path / "nope.yaml")
    assert err.value.message_lines == [f"{tmp_path}/nope.yaml: no such configuration file"]
    assert isinstance(err.value, ValueError)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tuike.yaml"
    path.write_bytes(b"currency: CNY\nshops:\n  s: {events_secret: \"\xff\"}\n")
    ok, lines = check_config_file(path)
    assert not ok and lines == [f"{path}:3: not valid UTF-8 (byte 0xff)"]


def test_python_tags_are_not_executed(tmp_path: Path) -> None:
    lines = _check(tmp_path, "currency: !!python/object/apply:os.system ['true']\n")
    assert lines[0].startswith("tuike.yaml:1: YAML syntax error (column 11): could not determine a constructor")


# --- path to line --------------------------------------------------------------------------


def test_line_of_walks_keys_and_indexes() -> None:
    root = yaml.compose(textwrap.dedent("""\
        commission:
          levels: ["0.10",
                   "0.05"]
          rules:
            - id: a
              levels: ["0.1"]
            - id: b
              when:
                category: x
    """))
    assert line_of(root, "commission") == 1
    assert line_of(root, "commission.levels") == 2
    assert line_of(root, "commission.levels[1]") == 3
    assert line_of(root, "commission.rules[1]") == 7
    assert line_of(root, "commission.rules[1].when.category") == 9
    assert line_of(root, "commission.rules[1].levels") == 7  # missing key: the deepest line found
    assert line_of(root, "commission.rules[5].levels") == 4
    assert line_of(root, "(top)") == 1
    assert line_of(None, "anything") == 1


def test_parse_config_paths_all_resolve_in_the_example() -> None:
    """Every path the example's keys produce exists (guards the walker against a path format change)."""
    root = yaml.compose(EXAMPLE.read_text("utf-8"))
    assert line_of(root, "commission.campaigns[0].multiplier") == 28
    assert line_of(root, "commission.tiers[1].bonus") == 31
    assert parse_config(yaml.safe_load(EXAMPLE.read_text("utf-8"))) == load_config(EXAMPLE)


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    """A typo must not leave a default in force: the shop would be paid at other rates."""
    assert _check(tmp_path, """
        bindng: {mode: override}
        hold_day: 30
        commission:
          level: ["0.20", "0.10", "0.05"]
          rules:
            - {id: a, when: {sku: X}, levels: ["0.05"], fixd: ["1.00"]}
    """) == [
        "tuike.yaml:1: bindng: unknown key; did you mean 'binding'?",
        "tuike.yaml:2: hold_day: unknown key; did you mean 'hold_days'?",
        "tuike.yaml:4: commission.level: unknown key; did you mean 'levels'?",
        "tuike.yaml:6: commission.rules[0].fixd: unknown key; did you mean 'fixed'?",
    ]


# --- secrets others can read (tuike config check warns, exit still 0) --------------------


def test_inline_secrets_in_a_file_others_can_read_are_warned_about(tmp_path: Path) -> None:
    path = _file(tmp_path, """
        shops:
          s1:
            youzan_client_id: cd0e03a4099eb5c933
            shopify_secret: inline-secret
            events_secret: env:TUIKE_EVENTS_SECRET
        links:
          secret: another-inline-one
    """)
    path.chmod(0o644)
    ok, lines = check_config_file(path)
    assert ok  # a warning, not a refusal
    assert lines[:2] == [
        f"{path}:4: warning: shops.s1.shopify_secret is written inline and {path} can be read by group or others "
        f"(mode 0644): chmod 600 {path}, or write it env:NAME or file:PATH",
        f"{path}:7: warning: links.secret is written inline and {path} can be read by group or others "
        f"(mode 0644): chmod 600 {path}, or write it env:NAME or file:PATH"]
    assert lines[2].startswith(f"{path}: OK (")
    path.chmod(0o600)
    assert check_config_file(path) == (True, lines[2:])  # owner-only: nothing to say
    path.chmod(0o640)  # group-readable is readable by others too
    assert len(check_config_file(path)[1]) == 3


def test_file_secrets_others_can_read_are_warned_about(tmp_path: Path) -> None:
    open_key, closed_key = tmp_path / "events.key", tmp_path / "shopify.key"
    open_key.write_text("s3cret\n")
    open_key.chmod(0o604)
    closed_key.write_text("s3cret\n")
    closed_key.chmod(0o600)
    path = _file(tmp_path, f"""
        shops:
          s1:
            shopify_secret: file:{closed_key}
            events_secret: file:{open_key}
            woocommerce_secret: file:{tmp_path}/missing.key
    """)
    path.chmod(0o644)  # no inline secret: the configuration itself may be shared
    ok, lines = check_config_file(path)
    assert ok and lines[:2] == [
        f"{path}:4: warning: shops.s1.events_secret: file:{open_key} can be read by group or others (mode 0604): "
        f"chmod 600 {open_key}",
        f"{path}:5: warning: shops.s1.woocommerce_secret: file:{tmp_path}/missing.key: No such file or directory "
        "(it cannot be read where it is used)"]
    assert len(lines) == 3


def test_warnings_are_listed_with_the_problems_of_a_bad_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "hold_days: -1\nshops:\n  s1: {events_secret: inline}\n")
    path.chmod(0o644)
    ok, lines = check_config_file(path)
    assert not ok and lines == [
        f"{path}:1: hold_days: expected a whole number ≥ 0, got -1",
        f"{path}:3: warning: shops.s1.events_secret is written inline and {path} can be read by group or others "
        f"(mode 0644): chmod 600 {path}, or write it env:NAME or file:PATH"]
