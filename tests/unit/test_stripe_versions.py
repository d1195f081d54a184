"""The Stripe API versions paymux accepts (api/stripe_versions.py, through the middleware's
``valid_stripe_version``): every version Stripe released, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
import stripe

from paymux.api.middleware import STRIPE_API_VERSION, valid_stripe_version

NODE_API_VERSION = Path(__file__).parents[1] / "sdk/node/node_modules/stripe/cjs/apiVersion.js"


def test_the_versions_the_official_sdks_pin_are_accepted() -> None:
    assert valid_stripe_version(stripe.api_version), stripe.api_version
    assert valid_stripe_version(STRIPE_API_VERSION)
    if NODE_API_VERSION.exists():  # tests/sdk/node installed (make sdk-node)
        text = NODE_API_VERSION.read_text()
        pinned = text.split("exports.ApiVersion = '")[1].split("'")[0]
        assert valid_stripe_version(pinned), pinned


@pytest.mark.parametrize(
    "version",
    [
        "2011-06-21",  # Stripe's oldest listed version
        "2015-10-16",
        "2020-08-27",
        "2022-11-15",  # PaymentIntent.charges removed
        "2024-06-20",  # the last date-only version
        "2024-09-30.acacia",  # the first named release
        "2025-02-24.acacia",
        "2025-03-31.basil",
        "2025-08-27.basil",
        "2025-09-30.clover",
        "2026-02-25.clover",
        "2026-04-22.dahlia",
        "2026-09-30.endive",
    ],
)
def test_released_versions_are_accepted(version: str) -> None:
    assert valid_stripe_version(version)


@pytest.mark.parametrize(
    "version",
    [
        "2099-01-01",
        "2022-08-02",  # the day after 2022-08-01
        "2021-01-01",  # no version in 2021
        "2011-06-20",  # before the first
        "2024-06-20.acacia",  # a date-only version given a name
        "2024-09-30.basil",  # acacia's day, basil's name
        "2025-03-31.acacia",  # basil's day, acacia's name
        "2025-03-31.zinnia",  # no such release
        "2026-10-29.endive",  # past the newest version paymux knows
        "2025-02-29",  # not a date
        "latest",
    ],
)
def test_versions_stripe_never_released_are_refused(version: str) -> None:
    assert not valid_stripe_version(version)
