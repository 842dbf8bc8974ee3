"""Sends that wait together on a desktop that stopped reading, under the image's server (uvicorn, websockets).

While the connector's event sender waits for a stalled desktop's full socket
buffers to drain, anything else sent on that connection (a join's
acknowledgement here; pings alike) waits behind it. Under the websockets
library's own flow control the second send failed an assertion instead,
which ended the connection with a traceback (``aa_site.serve_uvicorn.websocket_protocol``).
"""

from __future__ import annotations

from benchmarks import faults
from events.history import Offset
from tests import processes
from tests.stalled_desktop import StalledDesktop
from tests.test_faults import SLOW_PADDING, pushes_past_the_socket_buffers

NO_LIMIT = {"WEBSOCKET_SEND_QUEUE_LIMIT": "1000000000", "WEBSOCKET_SEND_QUEUE_BYTES": "1000000000000"}


async def test_an_acknowledgement_waits_behind_the_events_a_stalled_desktop_has_not_read() -> None:
    first, second = faults.conversations(2)
    tally = faults.Tally("stalled sends")
    with processes.redis_server(private=True) as store, \
            processes.daphne_server(role="connector", redis=store, **NO_LIMIT) as connector, \
            processes.daphne_server(role="interceptor", redis=store) as interceptor:
        stalled, reader = StalledDesktop(connector.port), faults.Desktop()
        pubsub = faults.PubSub(interceptor, tally)
        try:
            await stalled.connect(faults.token())
            assert await stalled.call("join-conversation", first) == [True, first]
            await reader.connect(connector, faults.token(), first)
            pushes = [(first, f"before-{number}") for number in range(pushes_past_the_socket_buffers())]
            await faults.push_concurrently(pubsub, pushes, concurrency=8, padding=SLOW_PADDING)
            await faults.settle(lambda: len(reader.received) >= len(pushes))
            # The connector has handed every event to the stalled desktop's sender, which waits on its buffers.
            ack_id = await stalled.request("join-conversation", second)
            await pubsub.deliver(second, "after-join")
            answer = await stalled.acknowledgement(ack_id)
            await stalled.read_until(lambda d: len(d.events) > len(pushes), timeout=faults.WAIT)
        finally:
            stalled.close()
            await pubsub.close()
            await reader.client.disconnect()
        log = connector.log()
    assert answer == [True, second]
    received = [event.payload["message_id"] for event in stalled.events]
    assert sorted(received[:-1]) == sorted(message_id for _, message_id in pushes) and received[-1] == "after-join"
    seqs = [Offset.parse(offset).seq for offset in stalled.offsets()]
    assert seqs == sorted(seqs)
    assert stalled.ended is None
    assert "Traceback" not in log and '"severity": "ERROR"' not in log, log
