"""Lambda entry points: thin over the same pipeline the CLI runs."""
