"""Everything that holds a desktop connection: the consumer every transport shares, membership, the
fan-out of events to this process's desktops and its Redis subscriptions, presence, instances, recovery records,
and the transports (Socket.IO over WebSocket and long-polling, the plain ``/ws/`` WebSocket) with the Dialogflow
streaming calls a desktop makes over its socket."""
