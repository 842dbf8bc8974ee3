"""Socket.IO (Engine.IO 4 / Socket.IO 5) for the stock clients the UI modules use."""
