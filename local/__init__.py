"""The local stack: moto's server, an HTTP API gateway, a Lambda-like runtime and an SQS event source mapping.

Not deployed. ``python -m local.stack`` (``make run``) starts it; see README.md.
"""
