"""paymux's own web pages (not the /v1 API): the hosted invoice page and its PDF."""
