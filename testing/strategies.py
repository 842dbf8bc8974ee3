"""Hypothesis strategies shared by the property-based tests (``tests/test_properties_*.py``).

Bounded on purpose: every property test runs ``PROPERTY_SETTINGS`` (a few hundred examples, no
deadline), so the suite stays fast on a shared machine while each run still tries new inputs.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Examples per property test, and no per-example deadline (a shared 2-core machine has pauses).
PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    # The suite's autouse fixtures (settings, Redis prefix) are shared by a test's examples, as intended.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Strings a careless or hostile client sends: any text, lone surrogates and control characters included.
# (st.characters() leaves out surrogates unless asked for them: a JSON "\ud800" escape decodes to one.)
any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=40)
# Numbers at JSON's edges: huge integers, floats of every kind (NaN and infinities are refused by
# untrusted.json_value when they arrive as text, but a Python object may still hold them).
edge_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, 10**20, 253402300799, 253402300800]),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_scalars = st.one_of(st.none(), st.booleans(), edge_numbers, any_text)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(any_text, children, max_size=4)),
    max_leaves=12,
)

CONVERSATION_NAMES = st.one_of(
    st.sampled_from([
        "projects/p/conversations/c",
        "projects/acme/locations/global/conversations/CONV-1",
        "projects/p/locations/us-central1/conversations/c/participants/x",
        "projects//conversations/c",
        "projects/p/conversations/",
        "projects/p/conversations/c\n",
        "",
    ]),
    st.builds("projects/{}/conversations/{}".format, any_text, any_text),
    json_values,
)


def json_text(value: Any) -> str:
    """``value`` as JSON text, NaN and infinities allowed (they are what a lenient encoder would send)."""
    return json.dumps(value)


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
