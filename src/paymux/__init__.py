"""paymux: one payments integration for Stripe, PayPal, Square and a built-in sandbox.

Layers (imports point down only)::

    api/ web/ cli            entry points, no business rules
    services/ webhooks/ jobs/  use cases, one transaction each, emit events
    gateways/                the Gateway Protocol and one package per provider
    domain/                  state machines, error taxonomy; pure
    money/                   Money and ISO 4217 currencies; pure
    storage/                 SQLAlchemy models, unit of work, Alembic migrations
    security/ config.py      redaction, PAN detection, settings
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
