"""IP country from a MaxMind-format database (GeoLite2-Country, DB-IP's, or one built with
mmdb-writer), opened once per path. No database configured: no IP country from it."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import maxminddb

__all__ = ["country_of_ip", "open_geoip"]


@lru_cache(maxsize=4)
def open_geoip(path: str) -> Any:
    """The database at ``path``, opened once (OSError or ValueError if it can't be)."""
    return maxminddb.open_database(path)


def country_of_ip(path: str, ip: str) -> str | None:
    if not path:
        return None
    try:
        found = open_geoip(path).get(ip)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    country = found.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    return code.upper() if isinstance(code, str) and len(code) == 2 else None
