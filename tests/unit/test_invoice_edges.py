"""The pure rules around invoices: a credit note's split, an invoice item's amount, the
collection terms of a manual invoice, and the reader's locale (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymux.billing.credit_notes import Split, split_credit
from paymux.billing.invoice_document import pick_locale
from paymux.billing.invoice_items import item_amount
from paymux.billing.invoice_manual import check_collection
from paymux.domain.errors import PaymuxError


def test_a_note_first_lowers_what_is_still_due() -> None:
    # Open invoice with 3000 remaining: a 1000 note is all pre-payment.
    assert split_credit(1000, 3000, refund=None, credit=None, out_of_band=None,
                        refundable=0) == Split(1000, 0, 0, 0)
    # 800 remaining, a 1000 note: 800 pre-payment, the 200 paid part to the balance.
    split = split_credit(1000, 800, refund=None, credit=None, out_of_band=None, refundable=0)
    assert (split.pre_payment, split.credit) == (800, 200)


def test_the_paid_part_must_be_given_back_exactly() -> None:
    ok = split_credit(1000, 0, refund=600, credit=300, out_of_band=100, refundable=600)
    assert (ok.refund, ok.credit, ok.out_of_band) == (600, 300, 100)
    with pytest.raises(PaymuxError) as short:
        split_credit(1000, 0, refund=600, credit=None, out_of_band=None, refundable=1000)
    assert short.value.code == "parameter_invalid"
    with pytest.raises(PaymuxError) as too_much:
        split_credit(1000, 0, refund=1000, credit=None, out_of_band=None, refundable=999)
    assert too_much.value.code == "refund_amount_too_large"


@given(
    amount=st.integers(1, 10**9),
    remaining=st.integers(0, 10**9),
    refund_share=st.integers(0, 100),
)
def test_a_split_always_adds_up_to_the_note(amount: int, remaining: int,
                                            refund_share: int) -> None:
    post = amount - min(amount, remaining)
    refund = post * refund_share // 100
    split = split_credit(amount, remaining, refund=refund, credit=post - refund,
                         out_of_band=None, refundable=refund)
    assert split.pre_payment + split.refund + split.credit + split.out_of_band == amount
    assert 0 <= split.pre_payment <= remaining


def test_an_items_amount_comes_from_exactly_one_source() -> None:
    assert item_amount(amount=-250, unit_amount=None, quantity=None,
                       price_unit_amount=None) == (-250, 1, None)
    assert item_amount(amount=None, unit_amount=2500, quantity=3,
                       price_unit_amount=None) == (7500, 3, 2500)
    for kwargs, code in (
        ({"amount": None, "unit_amount": None, "quantity": 2}, "parameter_missing"),
        ({"amount": 1, "unit_amount": 1, "quantity": None}, "parameters_exclusive"),
        ({"amount": 1, "unit_amount": None, "quantity": 2}, "parameters_exclusive"),
    ):
        with pytest.raises(PaymuxError) as err:
            item_amount(price_unit_amount=None, **kwargs)
        assert err.value.code == code


def test_collection_terms_follow_stripe() -> None:
    check_collection("send_invoice", 30)
    check_collection("charge_automatically", None)
    for method, days, param in (("send_invoice", None, "days_until_due"),
                                ("charge_automatically", 5, "days_until_due"),
                                ("send_invoice", 4000, "days_until_due")):
        with pytest.raises(PaymuxError) as err:
            check_collection(method, days)
        assert err.value.param == param


@pytest.mark.parametrize(("explicit", "header", "expected"), [
    ("de", None, "de"),
    ("de-DE", "fr-FR", "de_DE"),
    (None, "fr-CH, fr;q=0.9, en;q=0.8", "fr_CH"),
    ("xx-nope", "*, de;q=0.5", "de"),
    (None, None, "en_US"),
    ("../../etc", "", "en_US"),
])
def test_the_locale_rule(explicit: str | None, header: str | None, expected: str) -> None:
    assert pick_locale(explicit, header) == expected
