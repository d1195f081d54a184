"""Pure domain rules: state machines, the error taxonomy, event names. No I/O here."""
