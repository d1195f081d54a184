"""The statements inside one statement sent on the database driver (``driver.observe``).

``storage.driver.later`` sends the writes it held as ONE statement on PostgreSQL: each but
the last a data-modifying ``wN AS (...)`` of a WITH, the last its main statement. A test
that asks which writes ran (not how many round trips) reads the parts."""

from __future__ import annotations

import re

_PART = re.compile(r"(?:WITH |, )w\d+ AS \(")
_RENAMED = re.compile(r"(?<![:\w]):w\d+_")  # a part's parameter, named apart: :w2_id


def parts(sql: str) -> list[str]:
    """``sql``'s statements: the held writes of a ``WITH w0 AS (...), w1 AS (...) ...``
    in the order they were held, with their own parameters' names (``:id``, not
    ``:w2_id``), else ``[sql]``."""
    found: list[str] = []
    at = 0
    while (match := _PART.match(sql, at)) is not None:
        depth, i, quote = 1, match.end(), ""
        while depth:
            char = sql[i]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            i += 1
        found.append(sql[match.end() : i - 1])
        at = i
    if not found:
        return [sql]
    return [_RENAMED.sub(":", part) for part in (*found, sql[at:].lstrip())]


def all_parts(statements: list[str]) -> list[str]:
    """Each statement's parts, in order."""
    return [part for sql in statements for part in parts(sql)]
