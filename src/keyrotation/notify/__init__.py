"""Emails to account owners: what happened, what comes next, rendered from templates."""
