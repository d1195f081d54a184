"""Which ``Stripe-Version`` values name an API version Stripe has released (pure rules).

Stripe answers 400 ``Invalid Stripe API version: <value>`` for a version it never had, even a
well-formed one (``2099-01-01``, ``2022-08-02``); paymux answers the same, so a typo in a pinned
version fails here as it would at Stripe instead of passing silently.

Two eras (docs.stripe.com/changelog):

- Before 2024-09-30 a version is a bare date, one of ``DATED_VERSIONS`` (Stripe's list of
  previous versions, 2011-06-21 to 2024-06-20).
- From ``2024-09-30.acacia`` on, a version is a monthly date with the name of its release
  (``2025-03-31.basil``). Stripe's monthly days are not all listed here: a date in the new
  era is accepted when it falls in its release's half-year (``RELEASES``) and is no later
  than the newest version paymux knows (its own, ``STRIPE_API_VERSION``). A bare date in the
  new era is accepted in the same range (a lenient reading; the SDKs always send the name).
"""

from __future__ import annotations

from datetime import date

__all__ = ["DATED_VERSIONS", "RELEASES", "known_stripe_version"]

# Stripe's versions before the named releases (docs.stripe.com/changelog, "Previous versions").
DATED_VERSIONS = frozenset(
    """
    2011-06-21 2011-06-28 2011-08-01 2011-09-15 2012-02-23 2012-03-25 2012-06-18 2012-07-09
    2012-09-24 2012-10-26 2012-11-07 2013-02-11 2013-02-13 2013-07-05 2013-08-12 2013-08-13
    2013-10-29 2013-12-03 2014-01-31 2014-03-13 2014-03-28 2014-05-19 2014-06-13 2014-06-17
    2014-07-22 2014-07-26 2014-08-04 2014-08-20 2014-09-08 2014-10-07 2014-11-05 2014-11-20
    2014-12-08 2014-12-17 2014-12-22 2015-01-11 2015-01-26 2015-02-10 2015-02-16 2015-02-18
    2015-03-24 2015-04-07 2015-06-15 2015-07-07 2015-07-13 2015-07-28 2015-08-07 2015-08-19
    2015-09-03 2015-09-08 2015-09-23 2015-10-01 2015-10-12 2015-10-16 2016-02-03 2016-02-19
    2016-02-22 2016-02-23 2016-02-29 2016-03-07 2016-06-15 2016-07-06 2016-10-19 2017-01-27
    2017-02-14 2017-04-06 2017-05-25 2017-06-05 2017-08-15 2017-12-14 2018-01-23 2018-02-05
    2018-02-06 2018-02-28 2018-05-21 2018-07-27 2018-08-23 2018-09-06 2018-09-24 2018-10-31
    2018-11-08 2019-02-11 2019-02-19 2019-03-14 2019-05-16 2019-08-14 2019-09-09 2019-10-08
    2019-10-17 2019-11-05 2019-12-03 2020-03-02 2020-08-27 2022-08-01 2022-11-15 2023-08-16
    2023-10-16 2024-04-10 2024-06-20
    """.split()
)

# Each named release and the first day of its half-year, in order. The day a release after
# clover began is not in paymux's sources, so dahlia starts the day after the last clover
# version known (2026-02-25.clover).
RELEASES: tuple[tuple[str, date], ...] = (
    ("acacia", date(2024, 9, 30)),
    ("basil", date(2025, 3, 31)),
    ("clover", date(2025, 9, 30)),
    ("dahlia", date(2026, 2, 26)),
    ("endive", date(2026, 9, 30)),
)
_NAMED_ERA = RELEASES[0][1]


def _release_of(day: date) -> str:
    name = RELEASES[0][0]
    for release, first in RELEASES:
        if day >= first:
            name = release
    return name


def known_stripe_version(day: date, name: str | None, newest: date) -> bool:
    """Whether the well-formed version ``day`` (``.name``) is one Stripe has released, as far
    as paymux can tell; ``newest``: the latest version paymux knows."""
    if day < _NAMED_ERA:
        return name is None and day.isoformat() in DATED_VERSIONS
    if day > newest:
        return False
    return name is None or name == _release_of(day)
