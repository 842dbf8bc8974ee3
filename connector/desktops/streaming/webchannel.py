"""One call over Google's WebChannel (BrowserChannel ``VER=8``) protocol, async, on a pooled ``httpx.AsyncClient``.

A call is three kinds of HTTP exchange against one channel URL:

- the handshake, ``POST ?VER=8&MODE=init&RID=<n>&X-HTTP-Session-Id=gsessionid``
  with body ``count=0``, whose answer names the session (``[["c","<SID>",...``)
  and, in the ``X-HTTP-Session-Id`` header, the ``gsessionid``;
- requests, form posts ``?VER=8&RID=<n+k>&SID=..&gsessionid=..&AID=0`` with body
  ``count=<k>&ofs=<offset>&req0___data__=<url-encoded JSON>...``;
- responses, from one long-lived ``GET ?VER=8&RID=rpc&SID=..&gsessionid=..&AID=0&CI=0&TYPE=xmlhttp``:
  a chunked body of frames ``<length>\\n<JSON array of [index, [message]]>``.

A message holding ``error`` ends the call (``WebChannelError``, with Google's
code when it gives one). The length prefix counts UTF-16 code units, as the
JavaScript client that Google's servers write for reads ``responseText.length``.
Nothing here logs request or response content above DEBUG.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

#: gRPC's INTERNAL: the code the sample always sends, and ours when upstream gives none.
DEFAULT_ERROR_CODE = 13
POST_HEADERS = {"Content-Type": "application/x-www-form-urlencoded", "X-WebChannel-Content-Type": "application/json"}
SESSION_HEADERS = ("x-http-session-id", "x-webchannel-session")
# The session id in the handshake's answer: [[0,["c","<SID>","",8,14]]].
_SID = re.compile(r'\[\s*"c"\s*,\s*"([^"]+)"')
# Messages that end the back channel without an error.
_CLOSING = frozenset({"close", "stop"})
# A frame longer than this is not one Dialogflow sends; refuse it rather than buffer without bound.
MAX_FRAME_UNITS = 8 * 1024 * 1024

Authorize = Callable[[], Awaitable[dict[str, str]]]


class WebChannelError(Exception):
    """The call failed; ``message`` is safe to show the desktop, ``code`` is Google's or 13."""

    def __init__(self, message: str, code: int = DEFAULT_ERROR_CODE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Channel:
    """One WebChannel session: ``open``, then ``send`` and ``responses`` (concurrently), then ``close``."""

    def __init__(self, client: httpx.AsyncClient, url: str, authorize: Authorize, *, timeout: httpx.Timeout) -> None:
        self._client = client
        self._url = url
        self._authorize = authorize
        self._timeout = timeout
        self._rid = random.randint(10000, 99999)
        self._offset = 0
        self._sid = ""
        self._gsessionid = ""
        self._back_channel: httpx.Response | None = None

    async def open(self) -> None:
        """Do the handshake; raise ``WebChannelError`` when it fails."""
        params = {"VER": "8", "MODE": "init", "RID": str(self._rid), "X-HTTP-Session-Id": "gsessionid"}
        response = await self._post(params, "count=0", step="handshake")
        found = _SID.search(response.text)
        if found is None:
            raise WebChannelError("the WebChannel handshake answer names no session")
        self._sid = found.group(1)
        self._gsessionid = next((response.headers[h] for h in SESSION_HEADERS if h in response.headers), self._sid)

    async def send(self, messages: Sequence[Any]) -> None:
        """Post ``messages`` (JSON values) as the next requests of the call."""
        if not messages:
            return
        self._rid += 1
        fields = [f"count={len(messages)}", f"ofs={self._offset}"]
        fields += [f"req{i}___data__={quote(json.dumps(m, separators=(',', ':')), safe='')}"
                   for i, m in enumerate(messages)]
        await self._post({**self._session_params(), "RID": str(self._rid), "AID": "0"}, "&".join(fields), step="request")
        self._offset += len(messages)
        logger.debug("WebChannel: sent %s message(s): %s", len(messages), messages)

    async def responses(self) -> AsyncIterator[dict[str, Any]]:
        """Open the back channel and yield each response message; return when upstream ends the call."""
        params = {**self._session_params(), "RID": "rpc", "AID": "0", "CI": "0", "TYPE": "xmlhttp"}
        headers = await self._authorize()
        request = self._client.build_request("GET", self._url, params=params, headers=headers,
                                             timeout=httpx.Timeout(None, connect=self._timeout.connect,
                                                                   pool=self._timeout.pool))
        try:
            self._back_channel = response = await self._client.send(request, stream=True)
            if response.status_code != 200:
                await response.aread()
                raise _http_error("back channel", response)
            frames = FrameReader()
            async for text in response.aiter_text():
                for frame in frames.feed(text):
                    for message in _messages(frame):
                        if message is None:
                            return
                        yield message
        except httpx.HTTPError as error:
            # The text is left out: some name the URL, with the session in its query.
            raise WebChannelError(f"the WebChannel connection failed ({type(error).__name__})") from None

    async def close(self) -> None:
        """Close the back channel, which ends the call upstream; safe to call more than once."""
        response, self._back_channel = self._back_channel, None
        if response is not None:
            await response.aclose()

    def _session_params(self) -> dict[str, str]:
        return {"VER": "8", "SID": self._sid, "gsessionid": self._gsessionid}

    async def _post(self, params: dict[str, str], body: str, *, step: str) -> httpx.Response:
        headers = {**await self._authorize(), **POST_HEADERS}
        try:
            response = await self._client.post(self._url, params=params, content=body.encode("ascii"),
                                               headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            raise WebChannelError(f"the WebChannel {step} timed out") from None
        except httpx.HTTPError as error:
            raise WebChannelError(f"the WebChannel {step} failed ({type(error).__name__})") from None
        if response.status_code != 200:
            raise _http_error(step, response)
        return response


class FrameReader:
    """Splits a back channel's text into frames: ``<length>\\n<length UTF-16 units of JSON>``."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[Any]:
        """Add ``text``; return the JSON value of every frame now complete."""
        self._buffer += text
        frames = []
        while True:
            newline = self._buffer.find("\n")
            if newline < 0:
                if len(self._buffer) > 20:
                    raise WebChannelError("the WebChannel answer is not length-prefixed frames")
                return frames
            size = self._buffer[:newline].strip()
            if not size.isdigit() or int(size) > MAX_FRAME_UNITS:
                raise WebChannelError("the WebChannel answer is not length-prefixed frames")
            end = _index_after_units(self._buffer, newline + 1, int(size))
            if end is None:
                return frames
            chunk, self._buffer = self._buffer[newline + 1:end], self._buffer[end:]
            try:
                frames.append(json.loads(chunk))
            except ValueError:
                raise WebChannelError("the WebChannel answer holds a frame that is not JSON") from None


def _index_after_units(text: str, start: int, units: int) -> int | None:
    """The index in ``text`` just past ``units`` UTF-16 code units from ``start``, or None if it is shorter."""
    if text.isascii():
        return start + units if len(text) - start >= units else None
    count, index = 0, start
    while count < units:
        if index >= len(text):
            return None
        count += 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    return index


def _messages(frame: Any) -> list[dict[str, Any] | None]:
    """The response messages of one frame (``None`` where upstream closes the channel); raise on an error."""
    if not isinstance(frame, list):
        raise WebChannelError("the WebChannel answer holds a frame that is not an array")
    messages: list[dict[str, Any] | None] = []
    for entry in frame:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list) and entry[1]):
            continue  # not [index, [message]]: nothing for the desktop
        message = entry[1][0]
        if isinstance(message, list) and message and isinstance(message[0], dict):
            message = message[0]
        if isinstance(message, dict) and "error" in message:
            raise _google_error(message["error"])
        if isinstance(message, dict):
            messages.append(message)
        elif message in _CLOSING:
            messages.append(None)
            break
        # "noop" keep-alives and anything else carry nothing for the desktop.
    return messages


def _google_error(error: Any) -> WebChannelError:
    """A WebChannelError from Google's ``{"code", "message", "status"}`` object (or whatever stands there)."""
    if not isinstance(error, dict):
        return WebChannelError("Dialogflow ended the stream with an error")
    code = error.get("code")
    message = error.get("message")
    return WebChannelError(
        message if isinstance(message, str) and message else "Dialogflow ended the stream with an error",
        code if isinstance(code, int) and not isinstance(code, bool) else DEFAULT_ERROR_CODE,
    )


def _http_error(step: str, response: httpx.Response) -> WebChannelError:
    """A failed exchange, with Google's message and code when its body is a Google error."""
    logger.warning("WebChannel %s answered HTTP %s", step, response.status_code)
    try:
        body = json.loads(response.text)
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # some Google front ends wrap the error object in an array
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        google = _google_error(body["error"])
        return WebChannelError(f"the WebChannel {step} failed: HTTP {response.status_code}: {google.message}",
                               google.code)
    return WebChannelError(f"the WebChannel {step} failed: HTTP {response.status_code}")
