"""Shared package of the job system: models, auth, store, queue, service, processors, HTTP set-up.

Deployed as the ``JobsLayer`` SAM layer (it lands on ``/opt/python/jobs`` in Lambda); the tests put
``layers/jobs`` on ``pythonpath``.
"""
