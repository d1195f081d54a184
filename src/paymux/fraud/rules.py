"""An account's fraud rules (``/v1/fraud/rules``): create, list, retrieve, update, disable,
enable, delete, and a dry run over past payments (``test``).

A rule is validated when saved: it must parse (a 400 whose message names the position and
what was expected, ``param`` ``rule``), and every ``@list`` it names must exist in the mode.
Lower ``priority`` runs first among rules of one action (Radar leaves them unordered; the
order here only decides which rule is reported when several match).

The rule set an account's payments are decided by is kept compiled, per rule version (id,
updated); each decision checks the account's rules' version (a count and the latest
change, read in the statement that reads its velocity counts), so a change made through any
API process is seen at the next payment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import maxminddb
from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.config import Settings
from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.fraud.defaults import DEFAULT_RULES, default_rules
from paymux.fraud.evaluate import CompiledRule, RuleSet, compile_rule
from paymux.fraud.geo import open_geoip
from paymux.fraud.language import Rule, RuleSyntaxError, parse_rule
from paymux.fraud.lists import BUILT_IN_LISTS, load_lists
from paymux.fraud.signals import parse_usd_rates
from paymux.services.context import (
    Context,
    CreatedRange,
    get_owned,
    merge_metadata,
    page_of,
    request_livemode,
    scoped,
)
from paymux.storage.models import FraudRule, PaymentIntent, RadarValueList

__all__ = ["FraudRules", "LoadedRules", "rule_view", "rules_from_file"]

log = logging.getLogger(__name__)

_COMPILED_MAX: Final = 10_000
_MISSING: Final[Any] = object()
MAX_RULES: Final = 500
MAX_TEST_PAYMENTS: Final = 1000
_CONFIG_PRIORITY: Final = 5_000_000  # after the account's rules, before the built-in ones


def _predicate(text: str) -> str:
    try:
        return parse_rule(text).predicate
    except RuleSyntaxError:  # saved before a stricter parser: still listed, as written
        return text.partition(" if ")[2].strip() or text


def rule_view(row: FraudRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "fraud_rule",
        "action": row.action,
        "predicate": _predicate(row.predicate),
        "rule": row.predicate,
        "priority": row.priority,
        "status": row.status,
        "description": row.description,
        "created": row.created_us // 1_000_000,
        "updated": row.updated_us // 1_000_000,
        "livemode": bool(row.livemode),
        "metadata": row.metadata_ or {},
    }


def _parsed(text: str) -> Rule:
    """The rule as saved: parsed and compiled now, so a rule that is saved is one every
    confirm can evaluate (a 400 naming the position otherwise, never a 500 later)."""
    try:
        rule = parse_rule(text)
        compile_rule(rule, id="check")
    except RuleSyntaxError as exc:
        raise PaymuxError.of(
            "parameter_invalid",
            f"The rule is not valid: {exc}",
            param="rule",
            position=exc.position,
            expected=exc.expected,
        ) from None
    except (SyntaxError, RecursionError, MemoryError):  # beyond what the parser caps
        raise PaymuxError.of(
            "parameter_invalid", "The rule is too complex to evaluate.", param="rule"
        ) from None
    return rule


def _compiled_or_none(row: FraudRule) -> CompiledRule | None:
    """A saved rule, compiled; one that no longer compiles (saved by an older version) is
    skipped with a warning rather than failing every confirm."""
    try:
        return compile_rule(parse_rule(row.predicate), id=row.id, priority=row.priority)
    except (RuleSyntaxError, SyntaxError, RecursionError, MemoryError) as exc:
        log.warning("fraud rule %s is skipped: it doesn't compile (%s)", row.id, exc)
        return None


async def _check_lists(s: AsyncSession, account_id: str, livemode: bool, rule: Rule) -> None:
    if not rule.lists:
        return
    found = set(
        (
            await s.execute(
                select(RadarValueList.alias).where(
                    RadarValueList.account_id == account_id,
                    RadarValueList.livemode.is_(livemode),
                    RadarValueList.alias.in_(sorted(rule.lists)),
                )
            )
        ).scalars()
    )
    missing = sorted(rule.lists - found - set(BUILT_IN_LISTS))
    if missing:
        raise PaymuxError.of(
            "parameter_invalid",
            f"The rule names the value list @{missing[0]}, which doesn't exist; create it "
            "with POST /v1/radar/value_lists first.",
            param="rule",
        )


class LoadedRules:
    """An account's rule set as decided by, the list aliases it names, and the version of
    its rules it was built from (``rules_version``)."""

    __slots__ = ("aliases", "ruleset", "version")

    def __init__(self, ruleset: RuleSet, aliases: frozenset[str], version: tuple[int, int]):
        self.ruleset = ruleset
        self.aliases = aliases
        self.version = version


def rules_version(*leading: Any, shape: Callable[[list[Any]], list[Any]] = list) -> Select[Any]:
    """The statement of an account's rules' version (bound ``account_id``, ``livemode``):
    how many rules, and the latest change; a change to any rule of the account (create,
    update, status, delete) changes this pair. ``leading`` columns come first and ``shape``
    wraps the pair's two columns. A decision reads the same pair in its velocity statement
    (``velocity._version_part``, SQL text: keep the two alike)."""
    figures = [func.count(), func.coalesce(func.max(FraudRule.updated_us), 0)]
    return select(*leading, *shape(figures)).where(
        FraudRule.account_id == bindparam("account_id"),
        FraudRule.livemode == bindparam("livemode"),
    )


_VERSION: Final = rules_version()


def rules_from_file(path: str) -> list[CompiledRule]:
    """The deployment's rules (``PAYMUX_FRAUD_RULES_FILE``): one per line, ``#`` comments.
    A rule that doesn't parse is a ValueError naming the file, line and position, raised
    when paymux starts (never at a payment)."""
    if not path:
        return []
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            rule = parse_rule(text)
        except RuleSyntaxError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
        if rule.lists:
            raise ValueError(
                f"{path}, line {number}: a deployment rule can't name value lists "
                "(they belong to an account)"
            )
        out.append(compile_rule(rule, id=f"config:{number}", priority=_CONFIG_PRIORITY + number))
    return out


def check_settings(settings: Settings) -> None:
    """The fraud settings, checked when paymux starts (a ValueError naming the setting),
    never at a payment: rates of known currencies, names of built-in rules, a GeoIP
    database that opens."""
    parse_usd_rates(settings.fraud_usd_rates)
    names = [n.strip() for n in settings.fraud_disabled_defaults.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DEFAULT_RULES))
    if unknown:
        raise ValueError(
            f"PAYMUX_FRAUD_DISABLED_DEFAULTS: no built-in rule named {unknown[0]!r} "
            f"(they are: {', '.join(DEFAULT_RULES)})"
        )
    if settings.fraud_geoip_database:
        try:
            open_geoip(settings.fraud_geoip_database)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ValueError(
                f"PAYMUX_FRAUD_GEOIP_DATABASE: {settings.fraud_geoip_database} can't be "
                f"opened as a MaxMind database ({type(exc).__name__})"
            ) from None


class FraudRules:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cache: dict[tuple[str, bool], LoadedRules] = {}
        self._compiled: dict[tuple[str, int], CompiledRule | None] = {}
        self._configured = rules_from_file(ctx.settings.fraud_rules_file)
        check_settings(ctx.settings)

    def cached(self, account_id: str, livemode: bool) -> LoadedRules | None:
        """The account's rule set as last loaded in this process (its version may be stale:
        ``loaded`` checks it), or None."""
        return self._cache.get((account_id, livemode))

    def forget(self, account_id: str) -> None:
        for key in [k for k in self._cache if k[0] == account_id]:
            self._cache.pop(key, None)

    async def loaded(
        self,
        s: AsyncSession,
        account_id: str,
        livemode: bool,
        version: tuple[int, int] | None = None,
    ) -> LoadedRules:
        """The account's active rules (and the defaults), for a decision: rebuilt only when
        the rules' version (one small aggregate query) changed, each rule compiled once per
        (id, updated) so a change through another API process is seen at the next
        payment. Lists are not loaded: a payment's facts are looked up in them
        (``lists.lists_matching``). ``version``: the version as the caller read it in
        ``s`` (a decision reads it with its velocity counts, one statement:
        ``velocity.counts_and_version``), else read here."""
        key = (account_id, livemode)
        found = self._cache.get(key)
        if version is None:
            counted, latest = (
                await s.execute(_VERSION, {"account_id": account_id, "livemode": livemode})
            ).one()
            version = (int(counted), int(latest))
        if found is not None and found.version == version:
            return found
        rows = (
            await s.execute(
                select(FraudRule).where(
                    FraudRule.account_id == account_id,
                    FraudRule.livemode.is_(livemode),
                    FraudRule.status == "active",
                )
            )
        ).scalars()
        compiled, current = [], []
        for row in rows:
            current.append((row.id, row.updated_us))
            made = self._compiled.get(current[-1], _MISSING)
            if made is _MISSING:
                made = _compiled_or_none(row)
                self._compiled[current[-1]] = made
            if isinstance(made, CompiledRule):
                compiled.append(made)
        if len(self._compiled) > _COMPILED_MAX:  # forget the versions replaced since
            self._compiled = {k: self._compiled[k] for k in current}
        settings = self.ctx.settings
        disabled = frozenset(
            n.strip() for n in settings.fraud_disabled_defaults.split(",") if n.strip()
        )
        compiled += self._configured
        compiled += default_rules(enabled=settings.fraud_defaults, disabled=disabled)
        aliases = frozenset(alias for rule in compiled for alias in rule.lists)
        loaded = LoadedRules(RuleSet(compiled), aliases, version)
        self._cache[key] = loaded
        return loaded

    async def create(self, account_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        rule = _parsed(p["rule"])
        livemode = request_livemode()
        now = self.ctx.now_us()
        async with self.ctx.db.write() as s:
            await _check_lists(s, account_id, livemode, rule)
            count = len(list((await s.execute(scoped(FraudRule, account_id))).scalars()))
            if count >= MAX_RULES:
                raise PaymuxError.of(
                    "parameter_invalid", f"An account has at most {MAX_RULES} rules.", param="rule"
                )
            row = FraudRule(
                id=new_id("frr"),
                account_id=account_id,
                livemode=livemode,
                action=rule.action.value,
                predicate=rule.source,
                priority=p.get("priority") or 0,
                status="disabled" if p.get("disabled") else "active",
                description=p.get("description"),
                metadata_=p.get("metadata") or {},
                created_us=now,
                updated_us=now,
            )
            s.add(row)
            await s.flush()
            view = rule_view(row)
        self.forget(account_id)
        return view

    async def retrieve(self, account_id: str, rule_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return rule_view(await get_owned(s, FraudRule, rule_id, account_id))

    async def update(self, account_id: str, rule_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            row = await get_owned(s, FraudRule, rule_id, account_id, lock=True)
            if p.get("rule") is not None:
                rule = _parsed(p["rule"])
                await _check_lists(s, account_id, bool(row.livemode), rule)
                row.action, row.predicate = rule.action.value, rule.source
            if p.get("priority") is not None:
                row.priority = p["priority"]
            if p.get("description") is not None:
                row.description = p["description"] or None
            if p.get("status") is not None:
                row.status = p["status"]
            if p.get("metadata") is not None:
                row.metadata_ = merge_metadata(row.metadata_, p["metadata"])
            # strictly later: (id, updated) names one version of the rule (the rule cache)
            row.updated_us = max(self.ctx.now_us(), row.updated_us + 1)
            view = rule_view(row)
        self.forget(account_id)
        return view

    async def set_status(self, account_id: str, rule_id: str, status: str) -> dict[str, Any]:
        return await self.update(account_id, rule_id, {"status": status})

    async def delete(self, account_id: str, rule_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            row = await get_owned(s, FraudRule, rule_id, account_id, lock=True)
            await s.delete(row)
        self.forget(account_id)
        return {"id": rule_id, "object": "fraud_rule", "deleted": True}

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        status: str | None = None,
        action: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        return await page_of(
            self.ctx,
            FraudRule,
            account_id,
            rule_view,
            FraudRule.status == status if status is not None else None,
            FraudRule.action == action if action is not None else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    async def test(self, account_id: str, text: str, limit: int) -> dict[str, Any]:
        """Evaluate ``text`` (not saved) against the facts recorded with the account's last
        ``limit`` decided payments; say which it would have matched."""
        rule = _parsed(text)
        livemode = request_livemode()
        compiled = compile_rule(rule, id="test")
        async with self.ctx.db.read() as s:
            await _check_lists(s, account_id, livemode, rule)
            lists = await load_lists(s, account_id, livemode)
            rows = (
                await s.execute(
                    scoped(PaymentIntent, account_id)
                    .where(PaymentIntent.fraud_outcome.is_not(None))
                    .order_by(PaymentIntent.created_us.desc(), PaymentIntent.id.desc())
                    .limit(limit)
                )
            ).scalars()
            intents = list(rows)
        matched = []
        for pi in intents:
            facts = (pi.fraud_outcome or {}).get("facts") or {}
            if compiled(_revived(facts), lists):
                matched.append(
                    {
                        "payment_intent": pi.id,
                        "amount": pi.amount,
                        "currency": pi.currency.lower(),
                        "created": pi.created_us // 1_000_000,
                        "outcome": (pi.fraud_outcome or {}).get("outcome"),
                    }
                )
        return {
            "object": "fraud_rule_test",
            "rule": rule.source,
            "action": rule.action.value,
            "evaluated": len(intents),
            "matched_count": len(matched),
            "matched": matched,
            "livemode": livemode,
        }


def _revived(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Facts as stored (JSON): ``amount_in_usd`` back to a Decimal."""
    out = dict(facts)
    if isinstance(out.get("amount_in_usd"), str):
        out["amount_in_usd"] = Decimal(out["amount_in_usd"])
    return out
