"""The harness that tests and benchmarks share: real processes, clients, fakes of the cloud APIs, push bodies.

``tests/`` holds the test modules (``test_*.py``), their ``conftest.py`` and the Django test settings;
everything they and ``benchmarks/`` run against lives here. Nothing here imports either of them.
"""
