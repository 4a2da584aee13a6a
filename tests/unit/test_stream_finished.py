"""`stream_finished`: relayed bytes that end with the stream's last event let the response end before the
upstream's end of body. Only the very last event counts: anything after it (a ping, another event) does not."""

from __future__ import annotations

import pytest

from app.dialects import anthropic_messages, openai_chat

STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


@pytest.mark.parametrize("data, finished", [
    (b'data: {"choices":[]}\n\ndata: [DONE]\n\n', True),
    (b"data: [DONE]\n\n", True),
    (b"data: [DONE]\r\n\r\n", True),
    (b'data: {"choices":[]}\n\n', False),
    (b"data: [DONE]", True),  # the separator may come in the next read; nothing the client needs follows
    (b'data: {"content":"data: [DONE]"}\n\n', False),
    (b"", False),
])
def test_openai_chat(data, finished):
    assert openai_chat.stream_finished(data) is finished


@pytest.mark.parametrize("data, finished", [
    (b'event: message_delta\ndata: {"type":"message_delta"}\n\n' + STOP, True),
    (STOP, True),
    (STOP.replace(b"\n", b"\r\n"), True),
    (STOP + b'event: ping\ndata: {"type": "ping"}\n\n', False),
    (b'event: message_delta\ndata: {"type":"message_delta"}\n\n', False),
    (b'event: content_block_delta\ndata: {"delta":{"text":"event: message_stop"}}\n\n', False),
    (b"", False),
])
def test_anthropic_messages(data, finished):
    assert anthropic_messages.stream_finished(data) is finished
