"""Benchmarks: scripts that print figures, run by hand (``python -m benchmarks.<name>``), never by pytest.

See ``benchmarks/README.md`` for what each one measures and the figures measured so far. What they run
against (servers, clients, fakes, tokens) is the shared harness in ``testing/``.
"""
