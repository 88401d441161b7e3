"""The compliance report: every key's standing against the controls, and what happens next."""
