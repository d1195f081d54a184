"""Billing's pure rules: no I/O, no storage, no clock of their own (times are passed in as
integer microseconds since the epoch, UTC). Each is small enough to read in one sitting and is
tested on its own, with property tests for the arithmetic (tests/unit/billing/)."""
