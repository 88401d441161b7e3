"""What the tool did: one event per change and per notice, kept in a local file or in S3."""
