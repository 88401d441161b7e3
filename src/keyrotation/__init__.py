"""keyrotation: keep every IAM user access key in an AWS Organization young."""

__version__ = "0.1.0"
