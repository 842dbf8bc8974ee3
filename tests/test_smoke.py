import json

from channels.testing import WebsocketCommunicator

from aa_site.asgi import application
from connector import tokens


async def test_socketio_roundtrip(redis_channel_layer):
    token = tokens.issue_token(user="alice")
    comm = WebsocketCommunicator(application, "/socket.io/?EIO=4&transport=websocket")
    connected, _ = await comm.connect()
    assert connected
    opening = await comm.receive_from()
    assert opening.startswith("0{")
    await comm.send_to('40' + json.dumps({"token": token}))
    assert (await comm.receive_from()).startswith('40{"sid"')
    await comm.send_to('421["join-conversation","projects/p/locations/global/conversations/c"]')
    assert await comm.receive_from() == '431[true,"projects/p/conversations/c"]'
    from connector import delivery
    await delivery.publish(conversation_name="projects/p/conversations/c", event="new-message-event", payload={"x": 1})
    assert await comm.receive_from(timeout=3) == '42["new-message-event",{"x":1}]'
    await comm.disconnect()
