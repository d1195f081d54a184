"""Edge cases of paymux.security.redact and paymux.security.logging found by mutation testing.

Each test pins a behaviour that a surviving mutmut mutant showed no other unit test checked:
known-secret masking, depth limits, value types kept as they are, fallbacks when a record
cannot be formatted, and how the formatters leave records for other handlers.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from decimal import Decimal

import pytest

from paymux.security.logging import (
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    request_id_var,
)
from paymux.security.redact import RedactingFilter, redact, redact_data, register_secret

PAN = "4242424242424242"
MASKED_PAN = "************4242"
TOO_DEEP = "[nested too deep]"

redact_module = importlib.import_module("paymux.security.redact")
logging_module = importlib.import_module("paymux.security.logging")


class Unprintable:
    """An object whose str() and repr() both fail."""

    def __str__(self) -> str:
        raise RuntimeError(PAN)

    __repr__ = __str__


def _in_lists(inner: object, levels: int) -> object:
    for _ in range(levels):
        inner = [inner]
    return inner


def _in_dicts(inner: object, levels: int) -> object:
    for _ in range(levels):
        inner = {"k": inner}
    return inner


def _record(msg: object = "m", args: tuple[object, ...] | None = None) -> logging.LogRecord:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, None)
    record.created = 0.0  # 1970-01-01T00:00:00.000Z
    return record


# --- register_secret / redact -------------------------------------------------


@pytest.fixture
def known_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register secrets for one test only."""
    monkeypatch.setattr(redact_module, "_KNOWN_SECRETS", set())
    yield


@pytest.mark.usefixtures("known_secrets")
def test_a_registered_secret_of_eight_characters_is_masked_wherever_it_appears() -> None:
    register_secret("Ab3$x9!Q")
    assert redact("key Ab3$x9!Q and again:Ab3$x9!Q.") == "key *** and again:***."


@pytest.mark.usefixtures("known_secrets")
def test_a_registered_secret_shorter_than_eight_characters_is_ignored() -> None:
    register_secret("Ab3$x9!")
    assert redact("key Ab3$x9! stays") == "key Ab3$x9! stays"


@pytest.mark.usefixtures("known_secrets")
def test_text_without_a_registered_secret_is_unchanged() -> None:
    register_secret("Ab3$x9!Q")
    assert redact("nothing secret here") == "nothing secret here"


# --- redact_data ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"authorization": ""}, {"authorization": "***"}),
        ({"Authorization": " Bearer abc"}, {"Authorization": "***"}),
        ({"authorization": "sk_test_abc"}, {"authorization": "***"}),
        ({b"authorization": b"tok\xe9n"}, {b"authorization": b"***"}),
        ([(b"authorization", b"Basic \xff\xfe")], [(b"authorization", b"Basic ***")]),
        ({b"cvc\xe9": 1}, {b"cvc\xe9": 1}),
    ],
)
def test_authorization_values_are_masked_whatever_their_form(
    data: object, expected: object
) -> None:
    assert redact_data(data) == expected


def test_bytes_outside_ascii_survive_redaction() -> None:
    assert redact_data(b"caf\xe9 \xff card 4242424242424242") == (
        b"caf\xe9 \xff card ************4242"
    )


def test_numbers_that_are_not_a_pan_keep_their_type() -> None:
    for value in (1234567890123, 10**12, 10**19 - 1, -(10**15), 1.5, Decimal("12.50"), True):
        result = redact_data(value)
        assert result == value
        assert type(result) is type(value)


def test_a_non_string_key_is_kept_and_its_value_redacted() -> None:
    assert redact_data({5: PAN, None: "x", 2.5: "cvc=1"}) == {
        5: MASKED_PAN,
        None: "x",
        2.5: "cvc=***",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ((PAN,), (MASKED_PAN,)),
        (("a", PAN, "b"), ("a", MASKED_PAN, "b")),
        (("note", PAN), ("note", MASKED_PAN)),
        ((1, PAN), (1, MASKED_PAN)),
    ],
)
def test_tuples_are_redacted_and_stay_tuples(data: object, expected: object) -> None:
    result = redact_data(data)
    assert result == expected
    assert type(result) is tuple


def test_twelve_nested_lists_are_copied_and_the_thirteenth_is_replaced() -> None:
    assert redact_data(_in_lists(PAN, 12)) == _in_lists(MASKED_PAN, 12)
    assert redact_data(_in_lists(PAN, 13)) == _in_lists(TOO_DEEP, 12)


def test_twelve_nested_mappings_are_copied_and_the_thirteenth_is_replaced() -> None:
    assert redact_data(_in_dicts(PAN, 12)) == _in_dicts(MASKED_PAN, 12)
    assert redact_data(_in_dicts(PAN, 13)) == _in_dicts(TOO_DEEP, 12)


def test_a_container_used_as_a_key_counts_towards_the_depth_limit() -> None:
    # A mapping at depth 10 has its keys at depth 11; at depth 11, keys are at depth 12.
    assert redact_data(_in_lists({("a",): 1}, 10)) == _in_lists({("a",): 1}, 10)
    assert redact_data(_in_lists({("a",): 1}, 11)) == _in_lists({TOO_DEEP: 1}, 11)
    assert redact_data({(PAN,): 1}) == {(MASKED_PAN,): 1}


# --- RedactingFilter --------------------------------------------------------------


def test_a_bad_format_string_keeps_the_message_and_the_redacted_arguments() -> None:
    record = _record("charging %d", (PAN,))
    RedactingFilter().filter(record)
    assert record.msg == f"charging %d [could not format arguments: ('{MASKED_PAN}',)]"


def test_an_unprintable_message_is_replaced_with_a_placeholder() -> None:
    record = _record(Unprintable(), (1,))
    RedactingFilter().filter(record)
    assert record.msg == "<unprintable log message> [could not format arguments: (1,)]"


def test_unprintable_arguments_are_replaced_with_a_placeholder() -> None:
    record = _record("x %d", (Unprintable(),))
    RedactingFilter().filter(record)
    assert record.msg == "x %d [could not format arguments: <unprintable arguments>]"


def test_a_withheld_record_keeps_nothing_a_formatter_could_print(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(obj: object) -> object:
        raise KeyError("bug")

    monkeypatch.setattr(redact_module, "redact_data", boom)
    try:
        raise ValueError(PAN)
    except ValueError as exc:
        record = logging.LogRecord(
            "x", logging.INFO, __file__, 1, "card %s", (PAN,), (ValueError, exc, None)
        )
    record.stack_info = f"Stack: {PAN}"
    record.__dict__["card"] = PAN
    assert RedactingFilter().filter(record) is True
    assert record.msg == "[log message withheld: redaction failed with KeyError]"
    assert record.args is None
    assert record.exc_info is None
    assert record.exc_text is None
    assert record.stack_info is None
    assert record.__dict__["card"] == "***"


def test_a_message_already_formatted_by_another_handler_is_redacted_too() -> None:
    record = _record("card %s", (PAN,))
    record.message = record.getMessage()  # as logging.Formatter.format leaves it
    RedactingFilter().filter(record)
    assert record.message == f"card {MASKED_PAN}"


def test_the_filter_does_not_add_a_message_attribute() -> None:
    record = _record("card %s", (PAN,))
    RedactingFilter().filter(record)
    assert "message" not in record.__dict__


def test_the_filter_formats_the_exception_and_clears_exc_info() -> None:
    try:
        raise ValueError(f"card {PAN}")
    except ValueError as exc:
        record = _record()
        record.exc_info = (ValueError, exc, exc.__traceback__)
    RedactingFilter().filter(record)
    assert record.exc_info is None
    assert record.exc_text is not None
    assert record.exc_text.startswith("Traceback (most recent call last):")
    assert record.exc_text.endswith(f"ValueError: card {MASKED_PAN}")


def test_an_exc_info_naming_only_a_type_is_formatted_and_cleared() -> None:
    # logging accepts any (type, value, traceback) tuple; the type decides.
    record = _record()
    record.exc_info = (ValueError, None, None)
    RedactingFilter().filter(record)
    assert record.exc_info is None
    assert record.exc_text == "NoneType: None"


# --- RequestIdFilter ---------------------------------------------------------------


def test_request_id_filter_stamps_the_current_request_id() -> None:
    record = _record()
    token = request_id_var.set("req_a")
    try:
        assert RequestIdFilter().filter(record) is True
    finally:
        request_id_var.reset(token)
    assert record.__dict__["request_id"] == "req_a"


def test_request_id_filter_keeps_an_id_already_on_the_record() -> None:
    record = _record()
    record.__dict__["request_id"] = "req_b"
    token = request_id_var.set("req_a")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert record.__dict__["request_id"] == "req_b"


def test_request_id_filter_replaces_a_none_id_with_the_current_one() -> None:
    record = _record()
    record.__dict__["request_id"] = None
    token = request_id_var.set("req_a")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    assert record.__dict__["request_id"] == "req_a"


# --- JsonFormatter -------------------------------------------------------------------


def test_an_extra_that_cannot_be_printed_is_named_by_its_type() -> None:
    record = _record()
    record.__dict__["thing"] = Unprintable()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["thing"] == "<unprintable Unprintable>"


def test_a_withheld_json_record_has_every_key_and_names_the_error() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, Unprintable(), (1,), None)
    record.created = 0.0
    assert json.loads(JsonFormatter().format(record)) == {
        "ts": "1970-01-01T00:00:00.000Z",
        "level": "ERROR",
        "logger": "x",
        "message": "[log record withheld: formatting failed with RuntimeError]",
        "request_id": None,
    }


def test_json_formatter_formats_and_redacts_an_exception_without_the_filter() -> None:
    try:
        raise ValueError(f"card {PAN}")
    except ValueError as exc:
        record = _record()
        record.exc_info = (ValueError, exc, exc.__traceback__)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert entry["exc"].endswith(f"ValueError: card {MASKED_PAN}")


def test_json_formatter_keeps_an_exception_text_already_formatted() -> None:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        record = _record()
        record.exc_info = (ValueError, exc, exc.__traceback__)
    record.exc_text = f"already formatted: {PAN}"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exc"] == f"already formatted: {MASKED_PAN}"


def test_json_formatter_formats_an_exc_info_naming_only_a_type() -> None:
    record = _record()
    record.exc_info = (ValueError, None, None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exc"] == "NoneType: None"


def test_json_formatter_writes_no_exc_for_an_empty_exc_info() -> None:
    record = _record()
    record.exc_info = (None, None, None)
    assert "exc" not in json.loads(JsonFormatter().format(record))


def test_json_formatter_writes_the_redacted_stack_without_the_filter() -> None:
    record = _record()
    record.stack_info = f"Stack (most recent call last):\n  card = {PAN}"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["stack"] == f"Stack (most recent call last):\n  card = {MASKED_PAN}"


def test_json_output_writes_non_ascii_text_as_is() -> None:
    line = JsonFormatter().format(_record("café €"))
    assert '"message": "café €"' in line


def test_a_rewrapped_json_line_keeps_every_key_and_non_ascii_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging_module, "redact", lambda text: text[:-1] + ", ***}")
    record = _record("café")
    token = request_id_var.set("req_r")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    assert "café" in line
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "message", "request_id"}
    assert entry["ts"] == "1970-01-01T00:00:00.000Z"
    assert entry["request_id"] == "req_r"
    assert entry["message"].startswith('{"ts": "1970-01-01T00:00:00.000Z", "level": "INFO"')
    assert '"message": "café"' in entry["message"]


# --- _TextFormatter --------------------------------------------------------------------


@pytest.fixture
def text_formatter() -> logging.Formatter:
    formatter: logging.Formatter = logging_module._TextFormatter("[%(request_id)s] %(message)s")
    return formatter


def test_text_formatter_prints_a_dash_and_leaves_no_request_id_behind(
    text_formatter: logging.Formatter,
) -> None:
    record = _record("card %s", (PAN,))
    assert text_formatter.format(record) == f"[-] card {MASKED_PAN}"
    assert "request_id" not in record.__dict__


def test_text_formatter_prints_the_current_request_id_for_a_record_without_one(
    text_formatter: logging.Formatter,
) -> None:
    record = _record()
    token = request_id_var.set("req_t")
    try:
        assert text_formatter.format(record) == "[req_t] m"
    finally:
        request_id_var.reset(token)
    assert "request_id" not in record.__dict__


def test_text_formatter_prints_and_keeps_the_record_s_own_request_id(
    text_formatter: logging.Formatter,
) -> None:
    record = _record()
    record.__dict__["request_id"] = "req_own"
    token = request_id_var.set("req_t")
    try:
        assert text_formatter.format(record) == "[req_own] m"
    finally:
        request_id_var.reset(token)
    assert record.__dict__["request_id"] == "req_own"


def test_text_formatter_puts_back_a_none_request_id(text_formatter: logging.Formatter) -> None:
    record = _record()
    record.__dict__["request_id"] = None
    assert text_formatter.format(record) == "[-] m"
    assert "request_id" in record.__dict__
    assert record.__dict__["request_id"] is None


# --- configure_logging -------------------------------------------------------------------


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers = list(root.handlers)
    saved_filters = {h: list(h.filters) for h in saved_handlers}
    uvicorn = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved_uvicorn = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in uvicorn
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


@pytest.mark.usefixtures("restore_root_logger")
def test_configure_logging_defaults_to_info_in_json() -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    configure_logging()
    assert root.level == logging.INFO
    assert isinstance(root.handlers[-1].formatter, JsonFormatter)
