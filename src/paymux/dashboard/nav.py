"""The dashboard's navigation: each entry shows when its page module exists and the signed-in
user's role may open it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache

from paymux.dashboard.auth import ANY, DEVELOPERS, CurrentUser
from paymux.dashboard.render_paths import PREFIX

__all__ = ["NAV", "NavEntry", "nav_for"]


@dataclass(frozen=True, slots=True)
class NavEntry:
    module: str
    path: str  # relative to /dashboard
    label: str
    roles: tuple[str, ...]

    @property
    def url(self) -> str:
        return PREFIX + self.path


NAV = (
    NavEntry("pages_home", "", "Home", ANY),
    NavEntry("pages_payments", "/payments", "Payments", ANY),
    NavEntry("pages_customers", "/customers", "Customers", ANY),
    NavEntry("pages_billing", "/billing", "Billing", ANY),
    NavEntry("pages_fraud", "/fraud", "Fraud", ANY),
    NavEntry("pages_webhooks", "/webhooks", "Webhooks", ANY),
    NavEntry("pages_keys", "/keys", "Developers", DEVELOPERS),
    NavEntry("pages_connections", "/connections", "Connections", DEVELOPERS),
    NavEntry("pages_audit", "/audit", "Audit log", DEVELOPERS),
    NavEntry("pages_requests", "/requests", "Requests", DEVELOPERS),
)


@cache
def _present(module: str) -> bool:
    return importlib.util.find_spec(f"paymux.dashboard.{module}") is not None


def nav_for(user: CurrentUser | None) -> list[NavEntry]:
    if user is None:
        return []
    return [e for e in NAV if _present(e.module) and user.can(e.roles)]
