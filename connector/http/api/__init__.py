"""The connector's HTTP API on Django REST framework (async views through ``adrf``): its shared policies.

``views.AsyncAPIView`` is the base of every connector endpoint; each endpoint
declares its authentication, permission, throttle and parser classes on
itself. ``exceptions.exception_handler`` writes every refusal as the
contract's ``{"message": ...}``.
"""
