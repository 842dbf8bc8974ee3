"""Socket.IO (Engine.IO 4 / Socket.IO 5) for the stock clients the UI modules use: the protocol, the server
and application both transports run, and the WebSocket transport's consumer (``consumer``)."""
