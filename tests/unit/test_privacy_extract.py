"""Every place a canonical request carries text is named and scanned; binary payloads are not."""

from __future__ import annotations

from dataclasses import dataclass

from app.canonical import (
    ChatRequest,
    DocumentPart,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)
from app.privacy.extract import request_texts

FULL = ChatRequest(
    model="coder",
    system=[TextPart("sys one"), TextPart("")],
    messages=[
        Message("user", [TextPart("hello"), ImagePart(url="https://bucket.s3.amazonaws.com/x.png?X-Amz-Signature=abc"),
                         ImagePart(url="data:image/png;base64,AAAA"), ImagePart(media_type="image/png", data="AAAA")]),
        Message("assistant", [ThinkingPart("let me think", signature="sig"), ThinkingPart("", redacted="opaque"),
                              ToolCallPart("t1", "Read", '{"file_path": "/etc/hosts", "opts": {"n": [1, "two"]}}'),
                              ToolCallPart("t2", "Bash", "not json at all")]),
        Message("user", [ToolResultPart("t1", [TextPart("127.0.0.1 localhost"), ImagePart(data="AAAA")], name="Read"),
                         DocumentPart({"type": "document", "title": "Lab results", "context": "from the clinic",
                                       "source": {"type": "text", "media_type": "text/plain", "data": "Hb 13.5"}}),
                         DocumentPart({"type": "document", "source": {"type": "base64", "media_type":
                                                                      "application/pdf", "data": "JVBERi0x"}}),
                         DocumentPart({"type": "document", "source": {"type": "content", "content": [
                             {"type": "text", "text": "chunk one"}, {"type": "image", "source": {
                                 "type": "base64", "media_type": "image/png", "data": "AAAA"}}]}}),
                         DocumentPart({"type": "document", "source": {"type": "url", "url": "https://x/doc.pdf"}})]),
    ],
    stop=["END"],
    tools=[ToolSpec("Read", "Reads a file", {"type": "object", "properties": {"file_path": {"type": "string"}}})],
    raw={"model": "coder", "messages": [{"role": "user", "content": "hello"}], "metadata": {"note": "visible"},
         "prediction": {"type": "content", "content": "predicted text"}, "max_tokens": 5},
)


def test_every_text_place_is_named() -> None:
    assert list(request_texts(FULL)) == [
        ("system[0]", "sys one"),
        ("messages[0].content[0].text", "hello"),
        ("messages[0].content[1].url", "https://bucket.s3.amazonaws.com/x.png?X-Amz-Signature=abc"),
        ("messages[1].content[0].thinking", "let me think"),
        ("messages[1].content[2].name", "Read"),
        ("messages[1].content[2].arguments.file_path", "/etc/hosts"),
        ("messages[1].content[2].arguments.opts.n[1]", "two"),
        ("messages[1].content[3].name", "Bash"),
        ("messages[1].content[3].arguments", "not json at all"),
        ("messages[2].content[0].name", "Read"),
        ("messages[2].content[0].content[0].text", "127.0.0.1 localhost"),
        ("messages[2].content[1].title", "Lab results"),
        ("messages[2].content[1].context", "from the clinic"),
        ("messages[2].content[1].source.data", "Hb 13.5"),
        ("messages[2].content[3].source.content[0].type", "text"),
        ("messages[2].content[3].source.content[0].text", "chunk one"),
        ("messages[2].content[3].source.content[1].type", "image"),
        ("messages[2].content[3].source.content[1].source.type", "base64"),
        ("messages[2].content[3].source.content[1].source.media_type", "image/png"),
        ("messages[2].content[4].source.url", "https://x/doc.pdf"),
        ("stop[0]", "END"),
        ("raw.metadata.note", "visible"),
        ("raw.prediction.type", "content"),
        ("raw.prediction.content", "predicted text"),
    ]


def test_tool_specs_only_when_asked() -> None:
    places = [p for p, _ in request_texts(FULL, include_tool_specs=True) if p.startswith("tools")]
    assert places == ["tools[0].name", "tools[0].description", "tools[0].parameters.type",
                      "tools[0].parameters.properties.file_path.type"]


def test_unknown_part_types_are_scanned_whole() -> None:
    @dataclass
    class AudioPart:
        transcript: str
        data: str

    r = ChatRequest(model="x", messages=[Message("user", [AudioPart("my pin is 1234", "data:audio/wav;base64,AA")])])
    assert list(request_texts(r)) == [("messages[0].content[0].transcript", "my pin is 1234")]
