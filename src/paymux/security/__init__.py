"""Keeping card data and credentials out of paymux's inputs and logs.

* :mod:`paymux.security.pan`: detect and mask card numbers (PANs), find them
  in request data.
* :mod:`paymux.security.redact`: mask card numbers and credentials in text
  and in log records.
* :mod:`paymux.security.logging`: JSON logging with redaction on every record.

Standard library only.
"""

from paymux.security.logging import (
    JsonFormatter,
    RequestIdFilter,
    configure_logging,
    install_redaction,
    request_id_var,
)
from paymux.security.pan import find_pan_param, is_luhn_valid, looks_like_pan, mask_pans
from paymux.security.redact import RedactingFilter, redact, redact_data, register_secret

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "RequestIdFilter",
    "configure_logging",
    "find_pan_param",
    "install_redaction",
    "is_luhn_valid",
    "looks_like_pan",
    "mask_pans",
    "redact",
    "redact_data",
    "register_secret",
    "request_id_var",
]
