"""Inbound gateway webhooks: verify, store in the inbox, answer, apply later in the worker."""
