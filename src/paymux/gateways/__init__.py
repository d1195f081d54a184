"""Gateways: one Protocol (base.py), one package per provider. Never imports storage or api."""
