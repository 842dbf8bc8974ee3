"""The token in an ``Authorization`` value, parsed one way everywhere.

The UI modules send the desktop JWT bare, some platforms prefix ``Bearer``;
Pub/Sub and Five9 always send ``Bearer <token>``. ``scheme_required`` says
which of the two a caller accepts.
"""

from __future__ import annotations


def bearer_token(authorization: str | None, *, scheme_required: bool = False) -> str:
    """The token in ``authorization``, or ``""`` when there is none.

    ``Bearer <token>`` (the scheme in any case) gives ``<token>``. Without
    the scheme the whole value is the token, unless ``scheme_required``, in
    which case there is no token.
    """
    value = (authorization or "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return "" if scheme_required else value
