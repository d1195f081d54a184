"""The sandbox processor's stored objects (gateways/sandbox/processor.py ``_dumps``): written
with orjson, read back with the standard library, the same values; what orjson refuses (an
integer past 64 bits) written by the standard library instead, never an error; and a stored
charge read back as it was made (its replay under the same idempotency key)."""

from __future__ import annotations

import json
from pathlib import Path

from paymux.gateways.sandbox import processor
from paymux.gateways.sandbox.processor import SandboxProcessor


def test_orjsons_text_reads_back_as_the_same_object() -> None:
    obj = {
        "id": "ch_sbx_1",
        "object": "charge",
        "amount": 2000,
        "currency": "usd",
        "capture": True,
        "customer": None,
        "message": "Zahlung \u00fcber \u20ac20 \u2028",
        "nested": {"list": [1, 2.5, "x", None, False]},
        "max": 2**63 - 1,
        "min": -(2**63),
    }
    text = processor._dumps(obj)
    assert json.loads(text) == obj
    # orjson's compact text (the standard library's has a space after each separator)
    assert text.startswith('{"id":"ch_sbx_1","object":"charge","amount":2000,"currency":"usd"')


def test_an_integer_past_64_bits_falls_back_to_the_standard_library() -> None:
    obj = {"id": "x", "object": "charge", "big": 2**64, "neg": -(2**70)}
    text = processor._dumps(obj)
    assert text == json.dumps(obj)  # orjson raised; the standard library's text
    assert json.loads(text)["big"] == 2**64


def test_a_charge_is_stored_and_replayed_with_the_same_values(tmp_path: Path) -> None:
    p = SandboxProcessor(str(tmp_path / "sandbox.db"))
    try:
        token = p.mint("pm_card_visa")
        assert token is not None
        request = {
            "token": token["id"],
            "reference": "pi_json",
            "amount": 2000,
            "currency": "usd",
            "capture": True,
        }
        first = p.authorize("key_json", request)
        again = p.authorize("key_json", request)
        assert first["status"] == "succeeded" and first["amount_captured"] == 2000
        assert again.pop("idempotent_replay") is True
        assert again == first
        assert p.describe(token["id"]) == token
    finally:
        p.close()
