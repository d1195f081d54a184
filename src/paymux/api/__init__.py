"""The HTTP API: a thin FastAPI shell over paymux.services. No business rules here."""
