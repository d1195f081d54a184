"""Tests for paymux.security.redact and paymux.security.logging."""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.security.logging import (
    JsonFormatter,
    configure_logging,
    install_redaction,
    request_id_var,
)
from paymux.security.pan import MASK
from paymux.security.redact import RedactingFilter, redact, redact_data

PAN = "4242424242424242"
MASKED_PAN = MASK + "4242"

# ``paymux.security.redact`` the attribute is the function (re-exported by the
# package); the module itself lives in sys.modules.
redact_module = importlib.import_module("paymux.security.redact")


# --- redact ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # card numbers
        (f"charging {PAN} now", f"charging {MASKED_PAN} now"),
        ("card 4242 4242 4242 4242", f"card {MASKED_PAN}"),
        ("card 4242.4242.4242.4242", f"card {MASKED_PAN}"),
        ("card 4242/4242/4242/4242", f"card {MASKED_PAN}"),
        ("card 4242_4242_4242_4242", f"card {MASKED_PAN}"),
        ("card 4242  4242\t4242\n4242", f"card {MASKED_PAN}"),
        ("GET /v1/x?n=4242%204242%204242%204242 HTTP/1.1", f"GET /v1/x?n={MASKED_PAN} HTTP/1.1"),
        ("card 4242\u00a04242\u20034242\u30004242", f"card {MASKED_PAN}"),
        ("card 4242\u200b4242\u200d4242\u20604242\ufeff", f"card {MASKED_PAN}\ufeff"),
        ("card " + "\uff14\uff12" * 8, f"card {MASKED_PAN}"),
        (f"ref{PAN} and {PAN}x", f"ref{MASKED_PAN} and {MASKED_PAN}x"),
        ("note 424 242 424 242 4242", f"note {MASKED_PAN}"),
        # card security codes
        ("cvc=123", "cvc=***"),
        ("cvc: 123", "cvc: ***"),
        ('{"cvc": "123"}', '{"cvc": "***"}'),
        ("{'cvv': '1234'}", "{'cvv': '***'}"),
        ("cvc2=123&x=1", "cvc2=***&x=1"),
        ("CVV2 = 999", "CVV2 = ***"),
        ("card[cvc]=123&card[exp_month]=12", "card[cvc]=***&card[exp_month]=12"),
        ("card%5Bcvc%5D=123", "card%5Bcvc%5D=***"),
        ("security_code='1234'", "security_code='***'"),
        ('{"securityCode": 123}', '{"securityCode": ***}'),
        ('{\\"cvc\\": \\"123\\"}', '{\\"cvc\\": \\"***\\"}'),
        # API keys and webhook secrets
        # (built from parts so no live-looking key literal sits in the repository)
        ("key=sk_" + "live_51HabcDEF123", "key=sk_live_***"),
        ("using sk_test_4eC39HqLyjWDarjtT1zdp7dc.", "using sk_test_***."),
        ("rk_live_abc123 and rk_test_def456", "rk_live_*** and rk_test_***"),
        ("pk_live_abc pk_test_def", "pk_live_*** pk_test_***"),
        ("secret whsec_abcDEF123+/=", "secret whsec_***"),
        ("EAAAEOuLQObrVwJvCvoio3bXMUc1PX2Qg7CmdJ3qN9wXdtP", "EAAA***"),
        ("pi_3Nabc_secret_XyZ123", "pi_3Nabc_secret_***"),
        # Authorization headers
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("authorization: Basic dXNlcjpwYXNz", "authorization: Basic ***"),
        ("Authorization: sk_test_abc", "Authorization: ***"),
        ("{'authorization': 'Bearer abc'}", "{'authorization': 'Bearer ***'}"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', '{"Authorization": "Basic ***"}'),
        (
            "[(b'host', b'localhost'), (b'authorization', b'Bearer abc')]",
            "[(b'host', b'localhost'), (b'authorization', b'Bearer ***')]",
        ),
        ("Proxy-Authorization: Basic abc", "Proxy-Authorization: Basic ***"),
        ("[('cvc', '123')]", "[('cvc', '***')]"),
        # Bearer tokens anywhere
        ("retrying with Bearer eyJhbGciOi.payload.sig", "retrying with Bearer ***"),
        ("Bearer sk_test_abc", "Bearer ***"),
        # other credentials
        ("password=hunter2 user=bob", "password=*** user=bob"),
        ('{"client_secret": "pi_1_secret_2"}', '{"client_secret": "***"}'),
        ("X-Api-Key: abc123", "X-Api-Key: ***"),
        ("access_token=abc&refresh_token=def", "access_token=***&refresh_token=***"),
    ],
)
def test_redact_masks_each_kind_of_secret(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"cvc_check": "pass", "address_line1_check": "pass"}',
        "preauthorization: 5",
        "task_test_runner finished",
        "order 12345 paid at 1700000000",
        "pi_3Nabc123 succeeded",
        '{"cvc": null}',
        "tokens: 3, api calls: 4",
        '{"message": "missing authorization", "request_id": "req_1"}',
        '{"error": "bad cvc", "code": "incorrect_cvc"}',
        "",
    ],
)
def test_redact_leaves_harmless_text_alone(text: str) -> None:
    assert redact(text) == text


@given(st.text())
def test_redact_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=1), st.text())
def test_a_bearer_token_never_survives_redaction(token: str, around: str) -> None:
    token = "".join(ch for ch in token if ch.isalnum()) or "x"
    out = redact(f"{around} Authorization: Bearer {token}\n{around}")
    assert f"Bearer {token}" not in out


def test_redacting_a_huge_input_stays_fast() -> None:
    text = ("cvc" + " " * 10 + "Bearer " + "1 " * 20) * 20_000
    assert "Bearer ***" in redact(text)


# --- redact_data -----------------------------------------------------------


def test_redact_data_masks_every_form_of_card_number_in_nested_data() -> None:
    data = {"a": ["4242.4242.4242.4242", {"b": "ref4242424242424242"}], "4242\t4242 4242 4242": 1}
    assert redact_data(data) == {"a": [MASKED_PAN, {"b": f"ref{MASKED_PAN}"}], MASKED_PAN: 1}


def test_redact_data_masks_strings_numbers_and_secret_keys_in_nested_data() -> None:
    data = {
        "note": f"card {PAN}",
        "card": {"number": int(PAN), "cvc": 123, "exp_month": 12},
        "headers": [(b"authorization", b"Basic dXNlcjpwYXNz"), (b"host", b"x")],
        "Authorization": "Bearer abc",
        "password": None,
    }
    assert redact_data(data) == {
        "note": f"card {MASKED_PAN}",
        "card": {"number": MASKED_PAN, "cvc": "***", "exp_month": 12},
        "headers": [(b"authorization", b"Basic ***"), (b"host", b"x")],
        "Authorization": "Bearer ***",
        "password": None,
    }


def test_redact_data_does_not_copy_arbitrarily_deep_data() -> None:
    data: object = PAN
    for _ in range(50):
        data = [data]
    assert PAN not in repr(redact_data(data))


# --- RedactingFilter -------------------------------------------------------


@pytest.fixture
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing "LEVEL message" lines to a StringIO through a redacting handler."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    install_redaction(handler)
    logger = logging.getLogger(f"paymux.tests.{request.node.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_pan_passed_as_a_log_argument_is_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("charging %s", PAN)
    assert stream.getvalue() == f"INFO charging {MASKED_PAN}\n"


def test_the_record_keeps_the_redacted_message_and_no_arguments() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "charging %s", (PAN,), None)
    assert RedactingFilter().filter(record) is True
    assert record.msg == f"charging {MASKED_PAN}"
    assert record.args is None
    assert record.getMessage() == f"charging {MASKED_PAN}"


def test_extra_attributes_are_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    handler = logger.handlers[0]
    handler.setFormatter(logging.Formatter("%(message)s auth=%(auth)s card=%(card)s"))
    logger.info("call", extra={"auth": "Bearer sk_test_abc", "card": {"number": PAN}})
    out = stream.getvalue()
    assert "sk_test_abc" not in out
    assert PAN not in out
    assert out == f"call auth=Bearer *** card={{'number': '{MASKED_PAN}'}}\n"


def test_an_extra_attribute_named_like_a_secret_is_masked_whatever_its_value() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.__dict__.update(cvc=123, password="hunter2")
    RedactingFilter().filter(record)
    assert record.__dict__["cvc"] == "***"
    assert record.__dict__["password"] == "***"


def test_an_exception_message_containing_a_pan_is_redacted(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    try:
        raise ValueError(f"card {PAN} declined, key sk_live_abc123")
    except ValueError:
        logger.exception("payment failed for %s", PAN)
    out = stream.getvalue()
    assert PAN not in out
    assert "sk_live_abc123" not in out
    # The traceback is still there and readable.
    assert out.startswith(f"ERROR payment failed for {MASKED_PAN}\nTraceback (most recent call")
    assert f"ValueError: card {MASKED_PAN} declined, key sk_live_***" in out
    assert "test_an_exception_message_containing_a_pan_is_redacted" in out


def test_a_chained_exception_is_redacted_in_both_parts(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    try:
        try:
            raise KeyError(PAN)
        except KeyError as exc:
            raise RuntimeError("cvc=123 rejected") from exc
    except RuntimeError:
        logger.error("failed", exc_info=True)
    out = stream.getvalue()
    assert PAN not in out
    assert "cvc=123" not in out
    assert "The above exception was the direct cause" in out


def test_stack_info_is_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    card = PAN  # appears in the source line shown in the stack
    logger.info("here", stack_info=True, extra={"card": card})
    assert PAN not in stream.getvalue()
    assert "Stack (most recent call last)" in stream.getvalue()


def test_a_bad_format_string_is_logged_redacted_instead_of_raising(
    logged: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream = logged
    logger.info("charging %d", PAN)
    out = stream.getvalue()
    assert PAN not in out
    assert MASKED_PAN in out
    # logging's own error report would have printed the raw arguments to stderr.
    assert capsys.readouterr().err == ""


def test_the_filter_never_raises_on_an_unprintable_message() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError(PAN)

        __repr__ = __str__

    record = logging.LogRecord("x", logging.INFO, __file__, 1, Unprintable(), (1,), None)
    assert RedactingFilter().filter(record) is True
    assert PAN not in record.getMessage()


def test_when_redaction_fails_the_record_is_withheld_not_leaked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(obj: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr(redact_module, "redact_data", boom)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %s", (PAN,), None)
    record.__dict__["card"] = PAN
    assert RedactingFilter().filter(record) is True
    assert PAN not in record.getMessage()
    assert record.__dict__["card"] == "***"
    assert "redaction failed" in record.getMessage()


def test_install_redaction_works_with_caplog_and_is_idempotent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_redaction(caplog.handler)
    install_redaction(caplog.handler)
    assert sum(isinstance(f, RedactingFilter) for f in caplog.handler.filters) == 1
    with caplog.at_level(logging.INFO, logger="paymux.tests.caplog"):
        logging.getLogger("paymux.tests.caplog").info("got %s with %s", PAN, "Bearer abc")
    assert caplog.messages == [f"got {MASKED_PAN} with Bearer ***"]
    assert PAN not in caplog.text


# --- JsonFormatter ---------------------------------------------------------


@pytest.fixture
def json_logged(
    logged: tuple[logging.Logger, io.StringIO],
) -> tuple[logging.Logger, io.StringIO]:
    logger, stream = logged
    logger.handlers[0].setFormatter(JsonFormatter())
    return logger, stream


def test_json_output_is_one_valid_object_per_line_with_the_request_id(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logged
    token = request_id_var.set("req_123")
    try:
        logger.warning("charging %s", PAN, extra={"amount": 1000, "currency": "usd"})
    finally:
        request_id_var.reset(token)
    logger.info("no request")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == f"charging {MASKED_PAN}"
    assert first["level"] == "WARNING"
    assert first["logger"] == logger.name
    assert first["request_id"] == "req_123"
    assert first["amount"] == 1000
    assert first["currency"] == "usd"
    assert first["ts"].endswith("Z")
    assert "exc" not in first
    assert second["request_id"] is None


def test_a_request_id_on_the_record_wins_over_the_context(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logged
    token = request_id_var.set("req_context")
    try:
        logger.info("m", extra={"request_id": "req_explicit"})
    finally:
        request_id_var.reset(token)
    assert json.loads(stream.getvalue())["request_id"] == "req_explicit"


def test_json_output_includes_the_redacted_exception(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logged
    try:
        raise ValueError(f"bad card {PAN}")
    except ValueError:
        logger.exception("failed")
    entry = json.loads(stream.getvalue())
    assert entry["exc"].startswith("Traceback")
    assert f"ValueError: bad card {MASKED_PAN}" in entry["exc"]
    assert PAN not in stream.getvalue()


def test_json_output_stays_valid_when_extras_hold_secrets_of_any_type(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logged
    extra = {
        "card": {"number": int(PAN), "cvc": 123},
        "raw": f'{{"cvc": 123, "number": {PAN}}}',
        "obj": object(),
        "level": "clashes with a built-in key",
    }
    logger.info("m", extra=extra)
    entry = json.loads(stream.getvalue())
    assert entry["card"] == {"number": MASKED_PAN, "cvc": "***"}
    assert entry["raw"] == f'{{"cvc": ***, "number": {MASKED_PAN}}}'
    assert entry["obj"].startswith("<object object")
    assert entry["level"] == "INFO"
    assert entry["extra_level"] == "clashes with a built-in key"
    assert PAN not in stream.getvalue()


def test_json_output_keeps_the_next_key_after_a_message_ending_in_a_key_word(
    json_logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = json_logged
    token = request_id_var.set("req_1")
    try:
        logger.info("request without authorization")
    finally:
        request_id_var.reset(token)
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "request without authorization"
    assert entry["request_id"] == "req_1"


@given(
    st.text(),
    st.dictionaries(
        st.sampled_from(["note", "cvc", "card_cvc", "authorization", "data"]),
        st.recursive(
            st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.just(int(PAN))),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=6,
        ),
        max_size=3,
    ),
)
def test_json_output_is_always_valid_json_without_the_pan(
    message: str, extra: dict[str, object]
) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, f"{message} | {PAN} |", None, None)
    record.__dict__.update(extra)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    json.loads(line)
    assert PAN not in line


def test_a_float_whose_digits_look_like_a_pan_becomes_a_masked_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.__dict__["value"] = 4.42424242424242e18
    entry = json.loads(JsonFormatter().format(record))
    assert entry["value"] == f"4.{MASKED_PAN}e+18"


def test_if_the_final_redaction_pass_breaks_the_json_the_line_is_rewrapped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logging_module = importlib.import_module("paymux.security.logging")
    monkeypatch.setattr(logging_module, "redact", lambda text: text[:-1] + ", ***}")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", None, None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "x"
    assert entry["message"].endswith('"request_id": null, ***}')


def test_json_formatter_never_raises_and_withholds_a_record_it_cannot_format() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError(PAN)

    record = logging.LogRecord("x", logging.INFO, __file__, 1, Unprintable(), (1,), None)
    line = JsonFormatter().format(record)
    assert json.loads(line)["message"].startswith("[log record withheld")
    assert PAN not in line


def test_json_formatter_redacts_even_without_the_filter() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %s", (PAN,), None)
    record.auth = "Bearer abc"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == f"card {MASKED_PAN}"
    assert entry["auth"] == "Bearer ***"


# --- configure_logging -----------------------------------------------------

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)
    saved_filters = {h: list(h.filters) for h in saved_handlers}
    saved_uvicorn = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in UVICORN_LOGGERS
    }
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    for handler, filters in saved_filters.items():
        handler.filters[:] = filters
    root.setLevel(saved_level)
    for name, (handlers, propagate) in saved_uvicorn.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_is_idempotent_and_routes_uvicorn_through_the_root(
    capsys: pytest.CaptureFixture[str],
) -> None:
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_access.propagate = False
    before = len(logging.getLogger().handlers)

    configure_logging("debug")
    configure_logging("INFO")

    root = logging.getLogger()
    assert len(root.handlers) == before + 1
    assert root.level == logging.INFO
    ours = root.handlers[-1]
    assert isinstance(ours, logging.StreamHandler)
    assert ours.stream is sys.stderr
    assert isinstance(ours.formatter, JsonFormatter)
    assert any(isinstance(f, RedactingFilter) for f in ours.filters)
    for name in UVICORN_LOGGERS:
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate

    token = request_id_var.set("req_9")
    try:
        uvicorn_access.info('%s - "%s %s" %d', "127.0.0.1", "GET", f"/pay?card={PAN}", 200)
    finally:
        request_id_var.reset(token)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["logger"] == "uvicorn.access"
    assert entry["message"] == f'127.0.0.1 - "GET /pay?card={MASKED_PAN}" 200'
    assert entry["request_id"] == "req_9"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_can_write_redacted_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json_output=False)
    logging.getLogger("paymux.tests.text").info("card %s", PAN)
    err = capsys.readouterr().err
    assert err.endswith(f"INFO     paymux.tests.text [-] card {MASKED_PAN}\n")


def test_configure_logging_rejects_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")
