"""The API's JSON responses (api/responses.py) are rendered with orjson and carry the same
bytes Starlette's ``JSONResponse`` renders (the standard library's ``json.dumps``, no
ASCII escaping, no spaces) for what the API answers; what orjson refuses is rendered as
Starlette renders it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.responses import JSONResponse as StarletteJSONResponse

from paymux.api import responses
from paymux.api.responses import JSONResponse

SAMPLES: list[Any] = [
    {
        "id": "pi_3Nq2",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 0,
        "livemode": False,
        "canceled_at": None,
        "metadata": {"order": "é-ü 東京", "note": 'a "quoted" \\ back\\slash'},
        "payment_method_types": ["card"],
        "nested": {"list": [1, -2, 9223372036854775807, -9223372036854775808, [], {}]},
    },
    {"controls": "tab\tnewline\ncr\rnul\x00bell\x07del\x7f", "separators": "\u2028\u2029"},
    {"emoji": "💳", "slash": "a/b", "html": "<script>&</script>"},
    {1: "integer key", "s": True},
    [],
    "text",
    0,
]


@pytest.fixture
def rendered_by_orjson(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What orjson rendered for the responses (its own ``dumps``, recorded)."""
    seen: list[bytes] = []
    real = orjson.dumps

    def dumps(content: Any, option: int = 0) -> bytes:
        body = real(content, option=option)
        seen.append(body)
        return body

    monkeypatch.setattr(responses.orjson, "dumps", dumps)
    return seen


@pytest.mark.parametrize("content", SAMPLES)
def test_the_same_bytes_as_starlette_renders(content: Any, rendered_by_orjson: list[bytes]) -> None:
    expected = StarletteJSONResponse(content).body
    assert JSONResponse(content).body == expected
    assert rendered_by_orjson == [expected]  # orjson's bytes, not Starlette's code


def test_what_orjson_refuses_is_rendered_as_starlette_renders_it(
    rendered_by_orjson: list[bytes],
) -> None:
    # An integer past 64 bits: orjson refuses it, the standard library writes it.
    content = {"big": 2**70 + 1, "negative": -(2**64) - 1}
    response = JSONResponse(content)
    assert rendered_by_orjson == []  # refused: nothing of orjson's
    assert response.body == b'{"big":1180591620717411303425,"negative":-18446744073709551617}'
    assert response.body == StarletteJSONResponse(content).body
    assert response.headers["content-type"] == "application/json"
    # What neither can render is still an error (a 500, as before), never a guess.
    with pytest.raises(TypeError):
        JSONResponse({"x": object()})
