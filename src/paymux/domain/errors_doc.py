"""Render docs/errors.md from the error tables.

The gateway rows come from the connectors, so the page is made with them all registered:
``make docs`` runs ``python -m paymux.gateways.errors_doc``, which discovers them and calls
``render``. Gateways are listed by name, each with its rows in its own order, whatever order
they were registered in.
"""

from __future__ import annotations

from paymux.domain.errors import DECLINE_CODES, ERRORS, GATEWAY_CODES

__all__ = ["render"]


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("|", "\\|")


def render() -> str:
    out = [
        "# Errors",
        "",
        "Generated from `src/paymux/domain/errors.py` by `make docs`; a test fails when this",
        "file and the tables differ. Every error response has this shape:",
        "",
        "```json",
        '{"error": {"type": "card_error", "code": "card_declined", "decline_code": '
        '"generic_decline", "param": null, "message": "...", "user_message": "...", '
        '"action": "retry", "retryable": true, "gateway": "sandbox", '
        '"gateway_code": "generic_decline", "request_id": "req_..."}}',
        "```",
        "",
        "`message` is for developers; `user_message` is safe to show a payer; `action` is "
        "what to do next.",
        "",
        "## Error codes",
        "",
        "| code | type | HTTP | action | retryable | message | user_message |",
        "|---|---|---|---|---|---|---|",
    ]
    for spec in ERRORS.values():
        out.append(
            f"| `{spec.code}` | {spec.type} | {spec.http_status} | {spec.action} | "
            f"{'yes' if spec.retryable else 'no'} | {_cell(spec.message)} | "
            f"{_cell(spec.user_message)} |"
        )
    out += [
        "",
        "## Decline codes (`card_declined` and friends)",
        "",
        "| decline_code | meaning | action | retryable | user_message |",
        "|---|---|---|---|---|",
    ]
    for d in DECLINE_CODES.values():
        out.append(
            f"| `{d.decline_code}` | {_cell(d.description)} | {d.action} | "
            f"{'yes' if d.retryable else 'no'} | {_cell(d.user_message)} |"
        )
    out += [
        "",
        "## Gateway codes",
        "",
        "Each gateway's own code, and the code and decline code paymux answers with. A code "
        "not in this table is answered as `card_declined` / `generic_decline` with the "
        "gateway's code in `gateway_code`.",
        "",
        "| gateway | gateway_code | code | decline_code |",
        "|---|---|---|---|",
    ]
    for row in sorted(GATEWAY_CODES.values(), key=lambda row: row.gateway):  # stable
        out.append(
            f"| {row.gateway} | `{row.gateway_code}` | `{row.code}` | "
            f"{'`' + row.decline_code + '`' if row.decline_code else ''} |"
        )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(
        "the gateway rows come from the connectors: run `python -m paymux.gateways.errors_doc`"
    )
