"""HTTP semantics the OpenAPI promises: 405 with Allow and its own code; an empty body is
told what it lacks. SQLite and PostgreSQL."""

from __future__ import annotations

from conftest import Api


def test_a_wrong_method_is_405_with_allow_and_a_stable_code(api: Api) -> None:
    r = api.http.put("/v1/payment_intents", json={})
    assert r.status_code == 405
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    error = r.json()["error"]
    assert (error["code"], error["type"]) == ("method_not_allowed", "invalid_request_error")
    assert r.headers["request-id"] == error["request_id"]
    r = api.http.delete("/v1/refunds")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_an_empty_body_is_told_what_it_lacks(api: Api) -> None:
    r = api.http.post("/v1/payment_intents")
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "parameter_missing"
    assert "None" not in error["message"]
    # currency is required by the schema (amount or amount_decimal is checked after it).
    assert error["message"] == "Missing required param: currency."
    assert error["param"] == "currency"
    r = api.http.post("/v1/refunds")
    error = r.json()["error"]
    assert (r.status_code, error["param"]) == (400, "payment_intent")
    assert "payment_intent" in error["message"]


def test_the_openapi_document_lists_the_error_responses_each_operation_returns(
    api: Api,
) -> None:
    spec = api.ok("GET", "/openapi.json")
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["type", "code", "message"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    paths = spec["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert "422" not in codes, (method, path)  # validation errors are 400s
            assert {"400", "404", "503"} <= codes, (method, path)
            if not path.startswith("/webhooks/"):
                assert {"401", "429"} <= codes, (method, path)
            for code in codes - {"200"}:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    assert "402" in paths["/v1/payment_intents/{pi_id}/confirm"]["post"]["responses"]
    assert "409" in paths["/v1/refunds"]["post"]["responses"]
    assert "402" not in paths["/v1/payment_intents/{pi_id}"]["get"]["responses"]
    assert "409" not in paths["/v1/payment_intents"]["get"]["responses"]
