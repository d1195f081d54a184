"""Fraud prevention (issue 13): a Radar-like rule language evaluated before every gateway
call, signals and velocity counters, value lists, decisions and the review queue.

Modules: ``attributes`` (what a rule can name), ``language`` (the parser), ``evaluate``
(pure: facts in, decision out), ``score`` (the risk score), ``defaults`` (built-in rules).
"""
