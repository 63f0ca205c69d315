"""The state of a hospital: tables and their records, the event handlers, dedupe, windows, census,
clinical rules applied to state, decisions and read-only views."""
