"""Redaction: mask every text place, never leak through raw, restore answers and streams exactly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    DocumentPart,
    ImagePart,
    Message,
    MessageEnd,
    MessageStart,
    StopReason,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from app.privacy.detectors import Scanner
from app.privacy.extract import request_texts
from app.privacy.redact import Redaction, RedactionFailed, Redactor
from app.privacy.rules import UserRule
from tests.unit.test_privacy_corpus import AWS, GITHUB, OPENAI, PRIVATE_KEY

REDACTOR = Redactor(Scanner.build())
EMAIL = "jane.doe@acme-corp.io"


def request() -> ChatRequest:
    return ChatRequest(
        model="orchestrator",
        system=[TextPart(f"Deploy key: {AWS}")],
        messages=[
            Message("user", [TextPart(f"mail {EMAIL} the key {AWS} and {OPENAI}")]),
            Message("assistant", [ToolCallPart("t1", "Write", json.dumps({"path": "k.pem", "content": PRIVATE_KEY}))]),
            Message("user", [ToolResultPart("t1", [TextPart(f"wrote key; token {GITHUB}")]),
                             DocumentPart({"type": "document", "title": f"for {EMAIL}",
                                           "source": {"type": "text", "media_type": "text/plain", "data": AWS}})]),
        ],
        stop=[AWS],
        raw={"messages": "the unmasked original", "metadata": {"x": AWS}},
    )


def test_every_place_is_masked_and_nothing_remains() -> None:
    red = REDACTOR.redact(request())
    texts = "\n".join(t for _, t in request_texts(red.request))
    for secret in (AWS, OPENAI, GITHUB, EMAIL, PRIVATE_KEY.splitlines()[1]):
        assert secret not in texts
    assert red.request.raw == {}  # no pass-through of the original body
    assert red.request.system[0].text == "Deploy key: «TG_SECRET_1»"
    assert red.request.messages[0].parts[0].text == "mail «TG_EMAIL_1» the key «TG_SECRET_1» and «TG_SECRET_2»"
    args = json.loads(red.request.messages[1].parts[0].arguments)  # still valid JSON
    assert args == {"path": "k.pem", "content": "«TG_SECRET_3»"}
    assert red.request.messages[2].parts[1].raw["title"] == "for «TG_EMAIL_1»"
    assert red.request.stop == ["«TG_SECRET_1»"]
    assert red.mapping == {"«TG_SECRET_1»": AWS, "«TG_EMAIL_1»": EMAIL, "«TG_SECRET_2»": OPENAI,
                           "«TG_SECRET_3»": PRIVATE_KEY, "«TG_SECRET_4»": GITHUB}


def test_placeholders_are_stable_as_the_conversation_grows() -> None:
    first = REDACTOR.redact(request())
    longer = request()
    longer.messages.append(Message("user", [TextPart(f"again {OPENAI}, and new.person@corp.io")]))
    second = REDACTOR.redact(longer)
    assert second.request.messages[:3] == first.request.messages
    assert second.request.messages[3].parts[0].text == "again «TG_SECRET_2», and «TG_EMAIL_2»"


def test_original_request_is_untouched() -> None:
    req = request()
    REDACTOR.redact(req)
    assert AWS in req.messages[0].parts[0].text and req.raw["metadata"] == {"x": AWS}


@pytest.mark.parametrize("req", [
    ChatRequest(model="x", messages=[Message("assistant", [ThinkingPart(f"key {AWS}", signature="sig")])]),
    ChatRequest(model="x", messages=[Message("user", [ImagePart(url=f"https://h/x.png?k={AWS}")])]),
])
def test_unmaskable_content_refuses(req: ChatRequest) -> None:
    with pytest.raises(RedactionFailed):
        REDACTOR.redact(req)


def test_truncated_private_key_refuses() -> None:
    truncated = "\n".join(PRIVATE_KEY.splitlines()[:-1])  # the END line cut off, as in `head` output
    with pytest.raises(RedactionFailed):
        REDACTOR.redact(ChatRequest(model="x", messages=[Message("user", [TextPart(truncated)])]))


def test_path_rules_refuse() -> None:
    redactor = Redactor(Scanner.build(rules=[UserRule("med", paths=["/srv/medical/**"])]))
    with pytest.raises(RedactionFailed) as e:
        redactor.redact(ChatRequest(model="x", messages=[Message("user", [TextPart("cat /srv/medical/a.txt")])]))
    assert "rule.med" in e.value.message and "/srv" not in e.value.message


def test_restore_response_text_and_json_arguments() -> None:
    red = REDACTOR.redact(request())
    resp = ChatResponse(id="r", model="m", stop_reason=StopReason.TOOL_USE, usage=Usage(), parts=[
        TextPart("Sent to «TG_EMAIL_1»; unknown «TG_SECRET_99» stays."),
        ToolCallPart("c1", "Write", json.dumps({"content": "«TG_SECRET_3»", "note": "\u00abTG_SECRET_1\u00bb"},
                                               ensure_ascii=True)),
        ThinkingPart("I used «TG_SECRET_1»", signature="s")])
    out = red.restore_response(resp)
    assert out.parts[0].text == f"Sent to {EMAIL}; unknown «TG_SECRET_99» stays."
    assert json.loads(out.parts[1].arguments) == {"content": PRIVATE_KEY, "note": AWS}
    assert out.parts[2].text == "I used «TG_SECRET_1»"  # signed reasoning is left as the model wrote it


# ------------------------------------------------------------------------------------------- streams
def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(text)]:
        pieces.append(text[last:p])
        last = p
    return [p for p in pieces if p]


RED = Redaction(ChatRequest(model="x", messages=[]), {"«TG_SECRET_1»": 'pa"ss\nword', "«TG_EMAIL_12»": EMAIL})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_stream_restores_placeholders_split_anywhere(text_cuts: list[int], json_cuts: list[int]) -> None:
    text = "Hi «TG_EMAIL_12», your «TG_SECRET_1» — «not ours» and «TG_SECRET_77» «"
    args = json.dumps({"a": "«TG_SECRET_1»", "b": "x \u00abTG_EMAIL_12\u00bb y"}, ensure_ascii=True)
    restorer = RED.stream_restorer()
    events = [MessageStart("r", "m"), BlockStart(0, "text"),
              *[TextDelta(0, c) for c in _chunks(text, text_cuts)],
              BlockStart(1, "tool_call", "c1", "Write"),
              *[ToolArgsDelta(1, c) for c in _chunks(args, json_cuts)],
              BlockStop(1), BlockStop(0), MessageEnd(StopReason.END_TURN, Usage())]
    out = [o for e in events for o in restorer.feed(e)]
    got_text = "".join(o.text for o in out if isinstance(o, TextDelta))
    got_args = "".join(o.partial_json for o in out if isinstance(o, ToolArgsDelta))
    assert got_text == RED.restore_text(text)
    assert json.loads(got_args) == {"a": 'pa"ss\nword', "b": f"x {EMAIL} y"}
    kinds = [type(o).__name__ for o in out]
    assert kinds[0] == "MessageStart" and kinds[-1] == "MessageEnd"
    # every delta of a block comes before that block's stop
    assert max(i for i, o in enumerate(out) if isinstance(o, ToolArgsDelta)) < kinds.index("BlockStop")


def test_message_end_flushes_held_text_and_other_events_pass() -> None:
    restorer = RED.stream_restorer()
    out = restorer.feed(TextDelta(0, "tail «TG_SEC"))
    assert out == [TextDelta(0, "tail ")]
    assert restorer.feed(ThinkingDelta(2, "«TG_SECRET_1»")) == [ThinkingDelta(2, "«TG_SECRET_1»")]
    end = MessageEnd(StopReason.MAX_TOKENS, Usage())
    assert restorer.feed(end) == [TextDelta(0, "«TG_SEC"), end]


def test_masked_tool_arguments_keep_their_text_when_nothing_matches() -> None:
    original = '{"command":  "ls -la"}'
    req = ChatRequest(model="x", messages=[Message("assistant", [ToolCallPart("t", "Bash", original)]),
                                           Message("user", [TextPart(f"key {AWS}")])])
    assert REDACTOR.redact(req).request.messages[0].parts[0].arguments == original
