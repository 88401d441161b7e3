"""The embedded AWS emulator (moto's server, in-process) and sample organizations for it.

Only the demo and the tests import this package; the Lambda functions never do.
"""
