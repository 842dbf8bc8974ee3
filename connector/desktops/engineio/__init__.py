"""Engine.IO 4: the session layer under Socket.IO (packets, open, heartbeat, close), transport-agnostic, and a
session's record in Redis (``store``), which the long-polling transport keeps and the WebSocket transport
takes over on an upgrade."""
