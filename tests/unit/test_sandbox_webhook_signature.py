"""The sandbox's webhook signatures (Stripe's scheme): each failure has its own reason."""

from __future__ import annotations

import json
import time

import pytest

from paymux.gateways.base import WebhookVerificationError
from paymux.gateways.signing import sign_header, verify_signature

SECRET = "whsec_test_secret"
BODY = json.dumps({"id": "evt_1", "type": "charge.updated"}).encode()


def reason(body: bytes, header: str | None, secrets: list[str], **kw: float) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        verify_signature(body, header, secrets, **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_a_signed_event_verifies_and_parses() -> None:
    event = verify_signature(BODY, sign_header(BODY, SECRET), [SECRET])
    assert event["id"] == "evt_1"


def test_any_of_several_secrets_and_any_v1_signature_verifies() -> None:
    t = int(time.time())
    good = sign_header(BODY, SECRET, t).split("v1=")[1]
    header = f"t={t},v0=ignored,v1=deadbeef,v1={good}"
    assert verify_signature(BODY, header, ["whsec_old", SECRET])["type"] == "charge.updated"


def test_each_failure_has_its_own_reason() -> None:
    assert reason(BODY, None, [SECRET]) == "missing_signature"
    assert reason(BODY, "v1=abc", [SECRET]) == "malformed_signature"
    assert reason(BODY, "t=notanumber,v1=abc", [SECRET]) == "malformed_signature"
    assert reason(BODY + b" ", sign_header(BODY, SECRET), [SECRET]) == "signature_mismatch"
    assert reason(BODY, sign_header(BODY, "whsec_wrong"), [SECRET]) == "signature_mismatch"
    old = sign_header(BODY, SECRET, int(time.time()) - 301)
    assert reason(BODY, old, [SECRET], tolerance=300) == "timestamp_outside_tolerance"
    assert reason(b"not json", sign_header(b"not json", SECRET), [SECRET]) == "invalid_payload"


# -- the body itself: UTF-8 JSON, bounded in depth ----------------------------------------
def test_load_event_refuses_what_no_provider_sends() -> None:
    import pytest as _pytest

    from paymux.gateways.base import WebhookVerificationError
    from paymux.gateways.payloads import load_event

    good = b'{"id": "evt_1", "type": "x", "data": {"s": "[[[{{{"}}'
    assert load_event(good) == {"id": "evt_1", "type": "x", "data": {"s": "[[[{{{"}}
    assert load_event(b'{"a": ' * 64 + b"1" + b"}" * 64) is not None  # exactly the limit
    refused = {
        "bom": b'\xef\xbb\xbf{"id": "evt_1"}',
        "utf-16": '{"id": "evt_1"}'.encode("utf-16"),
        "utf-16-le": '{"id": "evt_1"}'.encode("utf-16-le"),
        "latin-1": '{"id": "caf\u00e9"}'.encode("latin-1"),
        "too deep": b'{"a": ' * 65 + b"1" + b"}" * 65,
        "deep arrays": b"[" * 5000 + b"]" * 5000,
        "not an object": b"[1, 2]",
        "not json": b"id=evt_1",
    }
    for name, body in refused.items():
        with _pytest.raises(WebhookVerificationError) as caught:
            load_event(body)
        assert caught.value.reason == "invalid_payload", name
