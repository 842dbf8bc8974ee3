"""Engine.IO 4: the session layer under Socket.IO (packets, open, heartbeat, close), transport-agnostic."""
