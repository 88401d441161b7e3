"""Adapters: every call to AWS lives here, and boto3's dicts never leave this package."""
