"""Engine.IO's long-polling transport at ``/socket.io/``, with every session's state in Redis (no sticky sessions)."""
