"""A shop's rules (contract §2) as typed values, and the compliance checks that refuse bad ones.

:func:`parse_config` takes the decoded YAML mapping and returns a :class:`Config`, or raises
:class:`ConfigError` listing *every* problem, each with the dotted key path that caused it
(the YAML loader turns paths into line numbers). Pure: no file access here.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.fraud import SIGNALS, THRESHOLDS, FraudRules
from engine.tax import TAX_METHODS

MAX_LEVELS = 3  # 禁止传销条例: never more than three levels of commission
BINDING_MODES = ("first", "override", "new_customer_only")
ATTRIBUTIONS = ("binding", "last_click")


@dataclass(frozen=True)
class Problem:
    path: str  # dotted key path, e.g. "commission.rules[1].levels"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Rule:
    """A commission rule: first match wins and replaces the level rates for its items."""

    id: str
    category: str | None = None
    sku: str | None = None
    levels: tuple[Decimal, ...] | None = None  # rates per level
    fixed: tuple[Decimal, ...] | None = None  # fixed amount per unit, per level

    def matches(self, sku: str, category: str) -> bool:
        return (self.sku is None or self.sku == sku) and (self.category is None or self.category == category)


@dataclass(frozen=True)
class Campaign:
    id: str
    from_ms: int
    to_ms: int  # exclusive: an order at exactly `to` is outside
    multiplier: Decimal

    def active(self, ts_ms: int) -> bool:
        return self.from_ms <= ts_ms < self.to_ms


@dataclass(frozen=True)
class Tier:
    min_gmv: Decimal
    bonus: Decimal


@dataclass(frozen=True)
class Config:
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"
    binding_mode: str = "first"
    valid_days: int = 365
    attribution: str = "binding"
    click_window_days: int = 7
    levels: tuple[Decimal, ...] = (Decimal("0.10"), Decimal("0.05"), Decimal("0.02"))
    max_levels: int = MAX_LEVELS
    payout_cap: Decimal = Decimal("0.30")
    rules: tuple[Rule, ...] = ()
    campaigns: tuple[Campaign, ...] = ()
    tiers: tuple[Tier, ...] = ()
    hold_days: int = 7
    tax_method: str = "per_payment"
    fraud: FraudRules = field(default_factory=FraudRules)
    min_payout: Decimal = Decimal("1.00")  # settlement: a smaller net payout carries forward
    payer: str = "shop"  # who pays and withholds tax (one shop per tuike configuration)
    alert_jump: Decimal = Decimal(5)  # alert: a payout above this many times the payee's median payout
    alert_share: Decimal = Decimal("0.30")  # alert: a period's payouts above this share of attributed GMV
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    def rule_for(self, sku: str, category: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(sku, category):
                return rule
        return None

    def multiplier_at(self, ts_ms: int) -> tuple[Decimal, str | None]:
        """The multiplier of the campaign active at ``ts_ms`` (1 if none); overlaps do not stack,
        the largest wins (ties: the first listed)."""
        best: Campaign | None = None
        for c in self.campaigns:
            if c.active(ts_ms) and (best is None or c.multiplier > best.multiplier):
                best = c
        return (best.multiplier, best.id) if best else (Decimal(1), None)


DEFAULT = Config()


class _Reader:
    """Reads typed values out of the raw mapping, collecting problems instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def decimal(self, value: Any, path: str, *, lo: Decimal | None = Decimal(0), hi: Decimal | None = None) -> Decimal | None:
        if isinstance(value, float):
            self.fail(path, f'write money and rates as quoted decimal strings ("{value}"), not floats')
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.fail(path, f"expected a decimal string, got {value!r}")
            return None
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            self.fail(path, f"not a decimal number: {value!r}")
            return None
        if not d.is_finite() or (lo is not None and d < lo) or (hi is not None and d > hi):
            self.fail(path, f"{value!r} is out of range" + (f" [{lo}, {hi}]" if hi is not None else f" (must be ≥ {lo})"))
            return None
        return d

    def integer(self, value: Any, path: str, lo: int = 0) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.fail(path, f"expected a whole number ≥ {lo}, got {value!r}")
            return None
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...]) -> str | None:
        if value not in choices:
            self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def mapping(self, value: Any, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        return value

    def known(self, mapping: dict, path: str, allowed: tuple[str, ...]) -> None:
        """Refuse keys tuike does not know: a typo (``hold_day``) would otherwise leave a default in force."""
        for key in mapping:
            if key in allowed or any(w in str(key).lower() for w in _TEAM_WORDS):
                continue  # team keys get their own, sharper message
            near = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(allowed)}"
            self.fail(f"{path}.{key}" if path else str(key), f"unknown key; {hint}")

    def sequence(self, value: Any, path: str) -> list:
        """A YAML list; anything else would be iterated character by character or key by key."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {type(value).__name__}")
            return []
        return value

    def rates(self, value: Any, path: str) -> tuple[Decimal, ...] | None:
        if not isinstance(value, list) or not value:
            self.fail(path, f"expected a list of per-level values, got {value!r}")
            return None
        if len(value) > MAX_LEVELS:
            self.fail(path, f"{len(value)} levels configured; at most {MAX_LEVELS} levels of commission are allowed (禁止传销条例)")
            return None
        out = [self.decimal(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return None if any(v is None for v in out) else tuple(out)  # type: ignore[misc]

    def timestamp(self, value: Any, path: str) -> int | None:
        if value is None:
            self.fail(path, "required: an RFC 3339 timestamp such as \"2026-11-10T00:00:00+08:00\"")
            return None
        if isinstance(value, datetime):  # YAML may decode an unquoted timestamp itself
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(path, f"not an RFC 3339 timestamp: {value!r}")
                return None
        if parsed.tzinfo is None:
            self.fail(path, f"timestamp needs a UTC offset: {value!r}")
            return None
        return int(parsed.timestamp() * 1000)


# Sections later features read (tax, fraud, shops, kafka) are checked by the code that reads them.
TOP_LEVEL_KEYS = ("currency", "timezone", "binding", "attribution", "click_window_days", "commission", "tiers",
                  "hold_days", "tax", "fraud", "settlement", "shops", "kafka", "links", "gateway", "privacy",
                  "retention")
_TEAM_WORDS = ("team", "downline", "group", "network", "recruit")


def parse_config(raw: dict | None) -> Config:
    """Validate a decoded ``tuike.yaml`` and return its :class:`Config`, or raise :class:`ConfigError`."""
    raw = raw or {}
    r = _Reader()
    if not isinstance(raw, dict):
        raise ConfigError([Problem("(top)", "the configuration must be a YAML mapping")])
    kw: dict[str, Any] = {"raw": raw}

    if "currency" in raw:
        if not (isinstance(raw["currency"], str) and len(raw["currency"]) == 3 and raw["currency"].isupper()):
            r.fail("currency", f"expected an ISO 4217 code such as CNY, got {raw['currency']!r}")
        else:
            kw["currency"] = raw["currency"]
    if "timezone" in raw:
        try:
            ZoneInfo(str(raw["timezone"]))
            kw["timezone"] = str(raw["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            r.fail("timezone", f"unknown time zone {raw['timezone']!r}")

    binding = r.mapping(raw.get("binding"), "binding")
    r.known(binding, "binding", ("mode", "valid_days"))
    if "mode" in binding:
        kw["binding_mode"] = r.choice(binding["mode"], "binding.mode", BINDING_MODES)
    if "valid_days" in binding:
        kw["valid_days"] = r.integer(binding["valid_days"], "binding.valid_days")
    if "attribution" in raw:
        kw["attribution"] = r.choice(raw["attribution"], "attribution", ATTRIBUTIONS)
    if "click_window_days" in raw:
        kw["click_window_days"] = r.integer(raw["click_window_days"], "click_window_days", lo=1)
    if "hold_days" in raw:
        kw["hold_days"] = r.integer(raw["hold_days"], "hold_days")

    r.known(raw, "", TOP_LEVEL_KEYS)
    for key in raw:
        if any(w in str(key).lower() for w in _TEAM_WORDS):
            r.fail(str(key), "team compensation (团队计酬) is not allowed: commission comes from a promoter's own sales only")
    com = r.mapping(raw.get("commission"), "commission")
    r.known(com, "commission", ("levels", "max_levels", "payout_cap", "rules", "campaigns", "tiers"))
    for key in com:
        if any(w in str(key).lower() for w in _TEAM_WORDS):
            r.fail(f"commission.{key}", "team compensation (团队计酬) is not allowed: commission comes from a promoter's own sales only")
    if "max_levels" in com:
        ml = r.integer(com["max_levels"], "commission.max_levels", lo=1)
        if ml is not None and ml > MAX_LEVELS:
            r.fail("commission.max_levels", f"{ml} is above the compliance ceiling of {MAX_LEVELS} levels (禁止传销条例)")
        elif ml is not None:
            kw["max_levels"] = ml
    if "levels" in com:
        kw["levels"] = r.rates(com["levels"], "commission.levels")
    if "payout_cap" in com:
        kw["payout_cap"] = r.decimal(com["payout_cap"], "commission.payout_cap", hi=Decimal(1))

    rules, rule_paths = [], []
    for i, rr in enumerate(r.sequence(com.get("rules"), "commission.rules")):
        path = f"commission.rules[{i}]"
        rr = r.mapping(rr, path)
        r.known(rr, path, ("id", "when", "levels", "fixed"))
        when = r.mapping(rr.get("when"), f"{path}.when")
        for k in when:
            if k not in ("category", "sku"):
                r.fail(f"{path}.when.{k}", f"rules match on category or sku only, not {k!r}" + (
                    " (team volume may not drive commission: 团队计酬)" if any(w in str(k).lower() for w in _TEAM_WORDS) else ""))
        if "id" not in rr:
            r.fail(f"{path}.id", "every rule needs an id (it is written on each ledger row it pays)")
        if ("levels" in rr) == ("fixed" in rr):
            r.fail(path, "a rule gives either levels (rates) or fixed (amounts per unit), exactly one")
            continue
        levels = r.rates(rr["levels"], f"{path}.levels") if "levels" in rr else None
        fixed = r.rates(rr["fixed"], f"{path}.fixed") if "fixed" in rr else None
        rules.append(Rule(id=str(rr.get("id")), category=when.get("category"), sku=when.get("sku"), levels=levels, fixed=fixed))
        rule_paths.append(path)
    kw["rules"] = tuple(rules)

    campaigns = []
    for i, cc in enumerate(r.sequence(com.get("campaigns"), "commission.campaigns")):
        path = f"commission.campaigns[{i}]"
        cc = r.mapping(cc, path)
        r.known(cc, path, ("id", "from", "to", "multiplier"))
        f_ms = r.timestamp(cc.get("from"), f"{path}.from")
        t_ms = r.timestamp(cc.get("to"), f"{path}.to")
        mult = r.decimal(cc.get("multiplier"), f"{path}.multiplier", lo=Decimal(0))
        if f_ms is not None and t_ms is not None and t_ms <= f_ms:
            r.fail(f"{path}.to", "the campaign ends before it starts")
        if None not in (f_ms, t_ms, mult):
            campaigns.append(Campaign(str(cc.get("id", f"campaign-{i}")), f_ms, t_ms, mult))  # type: ignore[arg-type]
    kw["campaigns"] = tuple(campaigns)

    tiers = []
    tiers_at = "tiers" if "tiers" in raw and "tiers" not in com else "commission.tiers"
    if "tiers" in raw and "tiers" in com:
        r.fail("tiers", "tiers are given twice, here and under commission; keep one list")
    for i, tt in enumerate(r.sequence(raw.get("tiers") if tiers_at == "tiers" else com.get("tiers"), tiers_at)):
        path = f"{tiers_at}[{i}]"
        tt = r.mapping(tt, path)
        for k in tt:
            if k not in ("min_gmv", "bonus"):
                r.fail(f"{path}.{k}", f"tiers are based on the promoter's own sales only; {k!r} is not allowed"
                       + (" (团队计酬)" if any(w in str(k).lower() for w in _TEAM_WORDS) else ""))
        g = r.decimal(tt.get("min_gmv"), f"{path}.min_gmv")
        b = r.decimal(tt.get("bonus"), f"{path}.bonus", hi=Decimal(1))
        if g is not None and b is not None:
            tiers.append(Tier(g, b))
    kw["tiers"] = tuple(sorted(tiers, key=lambda t: t.min_gmv))

    tax = r.mapping(raw.get("tax"), "tax")
    if "method" in tax:
        kw["tax_method"] = r.choice(tax["method"], "tax.method", TAX_METHODS)
    kw["fraud"] = _fraud_rules(r, r.mapping(raw.get("fraud"), "fraud"))
    settlement = r.mapping(raw.get("settlement"), "settlement")
    r.known(settlement, "settlement", ("min_payout", "payer", "alert_jump", "alert_share"))
    for key in ("min_payout", "alert_jump", "alert_share"):
        if key in settlement:
            kw[key] = r.decimal(settlement[key], f"settlement.{key}")
    if "payer" in settlement:
        if isinstance(settlement["payer"], str) and settlement["payer"].strip():
            kw["payer"] = settlement["payer"].strip()
        else:
            r.fail("settlement.payer", f"expected the paying shop's name, got {settlement['payer']!r}")

    # The cap check runs on whatever parsed, so a file with other problems still lists a cap
    # breach too ("every problem listed"); it is skipped only where its inputs did not parse.
    config = Config(**{k: v for k, v in kw.items() if v is not None})
    failed = [p.path for p in r.problems]
    cap_problems = [] if {"commission.payout_cap", "commission.max_levels"} & set(failed) else [
        p for p in _cap_problems(config, rule_paths)
        if not any(f == p.path or f.startswith((p.path + "[", p.path + ".")) for f in failed)
    ]
    if r.problems or cap_problems:
        raise ConfigError(r.problems + cap_problems)
    return config


def _fraud_rules(r: _Reader, fraud: dict) -> FraudRules:
    """The ``fraud`` section: hold score, on/off, weights per signal code, thresholds (engine/fraud.py)."""
    r.known(fraud, "fraud", ("hold_score", "enabled", "weights", "thresholds", "peer_groups"))
    kw: dict[str, Any] = {}
    if "enabled" in fraud:
        if isinstance(fraud["enabled"], bool):
            kw["enabled"] = fraud["enabled"]
        else:
            r.fail("fraud.enabled", f"expected true or false, got {fraud['enabled']!r}")
    if "hold_score" in fraud:
        kw["hold_score"] = r.decimal(fraud["hold_score"], "fraud.hold_score", hi=Decimal(1))
    if "peer_groups" in fraud:
        kw["peer_groups"] = r.integer(fraud["peer_groups"], "fraud.peer_groups", lo=1)
    weights = {s.code: s.weight for s in SIGNALS}
    given = r.mapping(fraud.get("weights"), "fraud.weights")
    r.known(given, "fraud.weights", tuple(weights))
    for code in weights.keys() & given.keys():
        weights[code] = r.decimal(given[code], f"fraud.weights.{code}", hi=Decimal(1))  # type: ignore[assignment]
    limits = dict(THRESHOLDS)
    given = r.mapping(fraud.get("thresholds"), "fraud.thresholds")
    r.known(given, "fraud.thresholds", tuple(limits))
    for name in limits.keys() & given.keys():
        limits[name] = r.decimal(given[name], f"fraud.thresholds.{name}")  # type: ignore[assignment]
    if any(v is None for v in [*weights.values(), *limits.values(), *kw.values()]):
        return FraudRules()  # the problems are listed; the defaults stand in until they are fixed
    return FraudRules(weights=weights, limits=limits, **kw)


def _cap_problems(config: Config, rule_paths: list[str] | None = None) -> list[Problem]:
    """Refuse rates that, with the largest campaign multiplier and tier bonus, could pass the cap.
    ``rule_paths`` are the key paths of ``config.rules`` (a rule that did not parse shifts them)."""
    mult = max([c.multiplier for c in config.campaigns] + [Decimal(1)])
    bonus = max([t.bonus for t in config.tiers] + [Decimal(0)])
    out = []
    paths = rule_paths or [f"commission.rules[{i}]" for i in range(len(config.rules))]
    candidates = [("commission.levels", config.levels)] + [
        (f"{path}.levels", rule.levels) for path, rule in zip(paths, config.rules) if rule.levels
    ]
    for path, rates in candidates:
        worst = sum(rates[: config.max_levels], Decimal(0)) * mult + bonus
        if worst > config.payout_cap:
            out.append(Problem(path, (
                f"rates {'+'.join(str(x) for x in rates[:config.max_levels])} × largest campaign multiplier {mult}"
                f" + largest tier bonus {bonus} = {worst.normalize()} exceeds payout_cap {config.payout_cap}")))
    return out
