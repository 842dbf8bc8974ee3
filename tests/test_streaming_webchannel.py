"""The WebChannel client (``connector.desktops.streaming.webchannel``) against the fake WebChannel server, and its framing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest

from connector.desktops.streaming import webchannel
from testing import fake_webchannel
from testing.fake_webchannel import FakeWebChannel

TOKEN = "ya29.webchannel-test"
PATH = "google.cloud.dialogflow.v2beta1.Participants/StreamingReactiveCompanionSuggestions/channel"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeWebChannel]:
    with fake_webchannel.serve(lambda: {TOKEN}) as running:
        yield running


@pytest.fixture
def fake(server: FakeWebChannel) -> FakeWebChannel:
    server.reset()
    return server


async def authorize() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def channel(client: httpx.AsyncClient, fake: FakeWebChannel, *, seconds: float = 10.0) -> webchannel.Channel:
    return webchannel.Channel(client, f"{fake.url}/{PATH}", authorize, timeout=httpx.Timeout(seconds))


async def collect(call: webchannel.Channel, count: int) -> list[dict]:
    received = []
    async for message in call.responses():
        received.append(message)
        if len(received) == count:
            break
    return received


def test_frames_split_on_utf16_lengths_across_any_chunking() -> None:
    """Frames whose text has characters outside the BMP split right, however the text arrives."""
    messages = [[[1, [{"text": "caf\u00e9 \U0001F600 ok"}]]], [[2, [{"text": "plain"}]]], [[3, ["noop"]]]]
    stream = "".join(fake_webchannel.frame(m) for m in messages)
    for size in (1, 2, 5, len(stream)):
        reader = webchannel.FrameReader()
        frames = []
        for start in range(0, len(stream), size):
            frames += reader.feed(stream[start:start + size])
        assert frames == messages, size


@pytest.mark.parametrize("text", ["not a frame at all, far too long to be a length", "12x\n[]", "4\nnope"])
def test_a_back_channel_that_is_not_frames_is_an_error(text: str) -> None:
    with pytest.raises(webchannel.WebChannelError):
        webchannel.FrameReader().feed(text)


async def test_a_call_posts_requests_in_order_and_reads_their_replies(fake: FakeWebChannel) -> None:
    """Handshake, two posts (the fake checks SID, gsessionid, RID, ofs, count), replies in order on the GET."""
    fake.replies_per_request = 2
    async with httpx.AsyncClient() as client:
        call = channel(client, fake)
        await call.open()
        await call.send([{"participant": "p", "n": 0}])
        await call.send([{"n": 1}, {"n": "two & three=4%"}])
        received = await collect(call, 6)
        await call.close()
    assert fake.refused == []
    [session] = fake.sessions.values()
    assert session.requests == [{"participant": "p", "n": 0}, {"n": 1}, {"n": "two & three=4%"}]
    assert [(m["request_number"], m["reply_number"]) for m in received] == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


async def test_an_error_frame_ends_the_call_with_googles_code(fake: FakeWebChannel) -> None:
    fake.error_after = 1
    fake.error = {"code": 7, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}
    async with httpx.AsyncClient() as client:
        call = channel(client, fake)
        await call.open()
        await call.send([{"n": 0}, {"n": 1}])
        with pytest.raises(webchannel.WebChannelError) as raised:
            await collect(call, 5)
        await call.close()
    assert (raised.value.code, raised.value.message) == (7, "The caller does not have permission")


async def test_an_abrupt_close_is_an_error_with_code_13(fake: FakeWebChannel) -> None:
    fake.abrupt_close_after = 1
    async with httpx.AsyncClient() as client:
        call = channel(client, fake)
        await call.open()
        await call.send([{"n": 0}, {"n": 1}])
        with pytest.raises(webchannel.WebChannelError) as raised:
            await collect(call, 5)
        await call.close()
    assert raised.value.code == 13
    assert "connection" in raised.value.message


async def test_a_clean_end_of_the_back_channel_ends_the_call(fake: FakeWebChannel) -> None:
    fake.end_after = 2
    async with httpx.AsyncClient() as client:
        call = channel(client, fake)
        await call.open()
        await call.send([{"n": 0}, {"n": 1}, {"n": 2}])
        received = await collect(call, 10)
    assert [m["request_number"] for m in received] == [0, 1]


async def test_a_refused_handshake_carries_googles_message_and_code(fake: FakeWebChannel) -> None:
    fake.handshake_status = 403
    async with httpx.AsyncClient() as client:
        with pytest.raises(webchannel.WebChannelError) as raised:
            await channel(client, fake).open()
    assert raised.value.code == 403
    assert "HTTP 403: fake handshake refusal" in raised.value.message


async def test_a_handshake_slower_than_the_timeout_is_an_error(fake: FakeWebChannel) -> None:
    fake.handshake_delay = 2.0
    async with httpx.AsyncClient() as client:
        with pytest.raises(webchannel.WebChannelError, match="handshake timed out"):
            await channel(client, fake, seconds=0.3).open()


async def test_closing_closes_the_back_channel_upstream(fake: FakeWebChannel) -> None:
    async with httpx.AsyncClient() as client:
        call = channel(client, fake)
        await call.open()
        await call.send([{"n": 0}])
        await collect(call, 1)
        await call.close()
        [session] = fake.sessions.values()
        for _ in range(200):
            if session.closed_by_client:
                break
            await asyncio.sleep(0.02)
    assert session.closed_by_client
    assert json.dumps(session.requests) == '[{"n": 0}]'
