"""Value lists (``/v1/radar/value_lists`` and ``/v1/radar/value_list_items``), in Stripe's
shape: a list has an ``alias`` rules name as ``@alias``, a ``name`` and an ``item_type``
(what its items are: emails, IPs, card fingerprints, BINs, countries, ...). Items are matched
case-insensitively, but for ``case_sensitive_string`` lists (held as given).

A list a rule names can't be deleted (as on Stripe); delete or edit the rule first.

Built-in lists (``BUILT_IN_LISTS``) exist for every account, read-only: rules name them
without creating them, and no account list can take their alias.
``@disposable_email_domains`` holds the domains of the ``disposable-email-domains`` package
(the same list as ``:is_disposable_email:``), e.g.
``review if :email_domain: in @disposable_email_domains``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final

from disposable_email_domains import blocklist as _DISPOSABLE
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paymux.domain.errors import PaymuxError
from paymux.domain.ids import new_id
from paymux.fraud.language import RuleSyntaxError, parse_rule
from paymux.services.context import (
    Context,
    CreatedRange,
    get_owned,
    merge_metadata,
    page_of,
    request_livemode,
    scoped,
)
from paymux.storage.models import FraudRule, RadarValueList, RadarValueListItem

__all__ = [
    "BUILT_IN_LISTS",
    "ITEM_TYPES",
    "ValueLists",
    "item_view",
    "list_view",
    "lists_matching",
    "load_lists",
    "with_built_in",
]

ITEM_TYPES: Final = (
    "card_bin",
    "card_fingerprint",
    "case_sensitive_string",
    "country",
    "customer_id",
    "email",
    "ip_address",
    "sepa_debit_fingerprint",
    "string",
    "us_bank_account_fingerprint",
)
_ALIAS: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
_MAX_ITEMS: Final = 100_000

# Read-only lists every account has: alias -> values (case-folded, as rules compare them).
BUILT_IN_LISTS: Final[Mapping[str, frozenset[str]]] = {
    "disposable_email_domains": frozenset(d.casefold() for d in _DISPOSABLE),
}


def list_view(row: RadarValueList, items: list[RadarValueListItem] | None = None) -> dict[str, Any]:
    shown = items or []
    return {
        "id": row.id,
        "object": "radar.value_list",
        "alias": row.alias,
        "created": row.created_us // 1_000_000,
        "created_by": row.created_by,
        "item_type": row.item_type,
        "list_items": {
            "object": "list",
            "data": [item_view(i) for i in shown[:10]],
            "has_more": len(shown) > 10,
            "total_count": len(shown),
            "url": f"/v1/radar/value_list_items?value_list={row.id}",
        },
        "livemode": bool(row.livemode),
        "metadata": row.metadata_ or {},
        "name": row.name,
    }


def item_view(row: RadarValueListItem) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "radar.value_list_item",
        "created": row.created_us // 1_000_000,
        "created_by": row.created_by,
        "livemode": bool(row.livemode),
        "value": row.value,
        "value_list": row.value_list_id,
    }


def _check_alias(alias: str) -> str:
    if alias in BUILT_IN_LISTS:
        raise PaymuxError.of(
            "parameter_invalid",
            f"@{alias} is a built-in read-only list; choose another alias.",
            param="alias",
        )
    if not _ALIAS.fullmatch(alias):
        raise PaymuxError.of(
            "parameter_invalid",
            "An alias is 1-100 letters, digits, '_', '.' or '-', starting with a letter or "
            "'_' (a rule names it as @alias).",
            param="alias",
        )
    return alias


def _check_value(item_type: str, value: str) -> str:
    """The value as stored; a value that can't be of the list's type is a 400."""
    value = value.strip()
    ok = bool(value)
    if item_type == "ip_address":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError:
            ok = False
    elif item_type == "country":
        ok = len(value) == 2 and value.isalpha()
        value = value.upper()
    elif item_type == "card_bin":
        ok = value.isdigit() and 6 <= len(value) <= 8
    elif item_type == "email":
        ok = "@" in value and len(value) <= 512
    if not ok:
        raise PaymuxError.of(
            "parameter_invalid", f"'{value[:80]}' is not a valid {item_type}.", param="value"
        )
    return value


async def _by_alias(s: AsyncSession, account_id: str, livemode: bool, alias: str) -> bool:
    found = await s.execute(
        select(RadarValueList.id).where(
            RadarValueList.account_id == account_id,
            RadarValueList.livemode.is_(livemode),
            RadarValueList.alias == alias,
        )
    )
    return found.first() is not None


def _match_value(item_type: str, value: str) -> str:
    return value if item_type == "case_sensitive_string" else value.casefold()


async def lists_matching(
    s: AsyncSession,
    account_id: str,
    livemode: bool,
    aliases: frozenset[str],
    values: frozenset[str],
) -> dict[str, frozenset[str]]:
    """The lists ``aliases`` as far as a payment needs them: alias -> which of ``values``
    (the payment's facts, as rules compare them) each holds. One indexed IN query, whatever
    the lists' size; the built-in lists (``BUILT_IN_LISTS``) are looked up in memory. A
    decision whose rules are already loaded reads the same rows in its velocity statement
    (``velocity.decision_read``) and passes them to ``with_built_in``."""
    if not aliases or not values:
        return {}
    rows = await s.execute(
        select(RadarValueList.alias, RadarValueListItem.match_value)
        .join(RadarValueListItem, RadarValueListItem.value_list_id == RadarValueList.id)
        .where(
            RadarValueList.account_id == account_id,
            RadarValueList.livemode.is_(livemode),
            RadarValueList.alias.in_(sorted(aliases)),
            RadarValueListItem.match_value.in_(sorted(values)),
        )
    )
    found: dict[str, set[str]] = {}
    for alias, value in rows:
        found.setdefault(alias, set()).add(value)
    return with_built_in(aliases, values, found)


def with_built_in(
    aliases: frozenset[str], values: frozenset[str], found: Mapping[str, set[str]]
) -> dict[str, frozenset[str]]:
    """The matches of the account's lists (``found``: alias -> values its items hold), with
    the built-in lists' matches among ``aliases`` added: alias -> which of ``values`` each
    holds (no entry for a list holding none)."""
    out: dict[str, frozenset[str]] = {
        alias: frozenset(held) for alias, held in found.items() if alias in aliases and held
    }
    for alias in aliases:
        if alias in BUILT_IN_LISTS:
            held = BUILT_IN_LISTS[alias] & values
            if held:
                out[alias] = held | out.get(alias, frozenset())
    return out


async def load_lists(s: AsyncSession, account_id: str, livemode: bool) -> dict[str, frozenset[str]]:
    """Every list of the account in one mode, alias -> its values (case-folded, but for
    case-sensitive lists), for the evaluator."""
    rows = await s.execute(
        select(RadarValueList.alias, RadarValueList.item_type, RadarValueListItem.value)
        .join(RadarValueListItem, RadarValueListItem.value_list_id == RadarValueList.id)
        .where(RadarValueList.account_id == account_id, RadarValueList.livemode.is_(livemode))
    )
    out: dict[str, set[str]] = {alias: set(values) for alias, values in BUILT_IN_LISTS.items()}
    for alias, item_type, value in rows:
        out.setdefault(alias, set()).add(
            value if item_type == "case_sensitive_string" else value.casefold()
        )
    return {alias: frozenset(values) for alias, values in out.items()}


class ValueLists:
    def __init__(self, ctx: Context, on_change: Any = None) -> None:
        self.ctx = ctx
        self.on_change = on_change  # called (account_id) when a list or item changes

    def _changed(self, account_id: str) -> None:
        if self.on_change is not None:
            self.on_change(account_id)

    # -- lists -------------------------------------------------------------------------------
    async def create(
        self, account_id: str, p: Mapping[str, Any], created_by: str
    ) -> dict[str, Any]:
        alias = _check_alias(p["alias"])
        item_type = p.get("item_type") or "string"
        livemode = request_livemode()
        async with self.ctx.db.write() as s:
            if await _by_alias(s, account_id, livemode, alias):
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"A value list with the alias '{alias}' already exists.",
                    param="alias",
                )
            row = RadarValueList(
                id=new_id("rsl"),
                account_id=account_id,
                livemode=livemode,
                alias=alias,
                name=p["name"],
                item_type=item_type,
                created_by=created_by,
                metadata_=p.get("metadata") or {},
                created_us=self.ctx.now_us(),
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:  # made by a request that ran alongside this one
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"A value list with the alias '{alias}' already exists.",
                    param="alias",
                ) from None
            return list_view(row)

    async def _items(self, s: AsyncSession, list_id: str) -> list[RadarValueListItem]:
        rows = await s.execute(
            select(RadarValueListItem)
            .where(RadarValueListItem.value_list_id == list_id)
            .order_by(RadarValueListItem.created_us.desc(), RadarValueListItem.id.desc())
            .limit(11)
        )
        return list(rows.scalars())

    async def _view_with_items(self, s: AsyncSession, row: RadarValueList) -> dict[str, Any]:
        view = list_view(row, await self._items(s, row.id))
        total = await s.scalar(
            select(func.count()).where(RadarValueListItem.value_list_id == row.id)
        )
        view["list_items"]["total_count"] = int(total or 0)
        return view

    async def retrieve(self, account_id: str, list_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            row = await get_owned(s, RadarValueList, list_id, account_id)
            return await self._view_with_items(s, row)

    async def update(self, account_id: str, list_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            row = await get_owned(s, RadarValueList, list_id, account_id, lock=True)
            alias = p.get("alias")
            if alias is not None and alias != row.alias:
                _check_alias(alias)
                if await _by_alias(s, account_id, bool(row.livemode), alias):
                    raise PaymuxError.of(
                        "parameter_invalid",
                        f"A value list with the alias '{alias}' already exists.",
                        param="alias",
                    )
                if await _rules_naming(s, account_id, bool(row.livemode), row.alias):
                    raise PaymuxError.of(
                        "parameter_invalid",
                        f"The value list '{row.alias}' is named by a rule; change the rule first.",
                        param="alias",
                    )
                row.alias = alias
            if p.get("name") is not None:
                row.name = p["name"]
            if p.get("metadata") is not None:
                row.metadata_ = merge_metadata(row.metadata_, p["metadata"])
            view = await self._view_with_items(s, row)
        self._changed(account_id)
        return view

    async def delete(self, account_id: str, list_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            row = await get_owned(s, RadarValueList, list_id, account_id, lock=True)
            naming = await _rules_naming(s, account_id, bool(row.livemode), row.alias)
            if naming:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"The value list '{row.alias}' is named by the rule {naming[0]}; delete or "
                    "change that rule first.",
                    param="id",
                )
            await s.execute(
                delete(RadarValueListItem).where(RadarValueListItem.value_list_id == row.id)
            )
            await s.delete(row)
        self._changed(account_id)
        return {"id": list_id, "object": "radar.value_list", "deleted": True}

    async def list_page(
        self,
        account_id: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        alias: str | None = None,
        contains: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        having = None
        if contains is not None:
            having = RadarValueList.id.in_(
                select(RadarValueListItem.value_list_id).where(
                    func.lower(RadarValueListItem.value) == contains.strip().lower()
                )
            )
        return await page_of(
            self.ctx,
            RadarValueList,
            account_id,
            list_view,
            RadarValueList.alias == alias if alias is not None else None,
            having,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )

    # -- items -------------------------------------------------------------------------------
    async def add_item(
        self, account_id: str, list_id: str, value: str, created_by: str
    ) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            lst = await get_owned(s, RadarValueList, list_id, account_id, param="value_list")
            stored = _check_value(lst.item_type, value)
            count = await s.scalar(
                select(func.count()).where(RadarValueListItem.value_list_id == lst.id)
            )
            if int(count or 0) >= _MAX_ITEMS:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"A value list holds at most {_MAX_ITEMS} items.",
                    param="value_list",
                )
            dup = await s.execute(
                select(RadarValueListItem.id).where(
                    RadarValueListItem.value_list_id == lst.id, RadarValueListItem.value == stored
                )
            )
            if dup.first() is not None:
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"'{stored[:80]}' is already in the value list.",
                    param="value",
                )
            row = RadarValueListItem(
                id=new_id("rsli"),
                account_id=account_id,
                livemode=bool(lst.livemode),
                value_list_id=lst.id,
                value=stored,
                match_value=_match_value(lst.item_type, stored),
                created_by=created_by,
                created_us=self.ctx.now_us(),
            )
            s.add(row)
            try:
                await s.flush()
            except IntegrityError:  # added by a request that ran alongside this one
                raise PaymuxError.of(
                    "parameter_invalid",
                    f"'{stored[:80]}' is already in the value list.",
                    param="value",
                ) from None
            view = item_view(row)
        self._changed(account_id)
        return view

    async def retrieve_item(self, account_id: str, item_id: str) -> dict[str, Any]:
        async with self.ctx.db.read() as s:
            return item_view(await get_owned(s, RadarValueListItem, item_id, account_id))

    async def delete_item(self, account_id: str, item_id: str) -> dict[str, Any]:
        async with self.ctx.db.write() as s:
            row = await get_owned(s, RadarValueListItem, item_id, account_id, lock=True)
            await s.delete(row)
        self._changed(account_id)
        return {"id": item_id, "object": "radar.value_list_item", "deleted": True}

    async def list_items(
        self,
        account_id: str,
        value_list: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        value: str | None = None,
        created: CreatedRange | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        async with self.ctx.db.read() as s:
            await get_owned(s, RadarValueList, value_list, account_id, param="value_list")
        return await page_of(
            self.ctx,
            RadarValueListItem,
            account_id,
            item_view,
            RadarValueListItem.value_list_id == value_list,
            RadarValueListItem.value == value if value is not None else None,
            limit=limit,
            starting_after=starting_after,
            ending_before=ending_before,
            created=created,
        )


async def _rules_naming(s: AsyncSession, account_id: str, livemode: bool, alias: str) -> list[str]:
    """The ids of the account's rules (either status) that name ``@alias``."""
    rows = await s.execute(scoped(FraudRule, account_id).where(FraudRule.livemode.is_(livemode)))
    return [r.id for r in rows.scalars() if alias in _lists_named(r.predicate)]


def _lists_named(text: str) -> frozenset[str]:
    try:
        return parse_rule(text).lists
    except RuleSyntaxError:  # saved before a stricter parser: names what it seems to
        return frozenset(re.findall(r"@([A-Za-z0-9_]+)", text))
