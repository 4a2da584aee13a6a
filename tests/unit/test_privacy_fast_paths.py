"""The detectors' shortcuts find exactly what the full passes find.

Every request is classified, so the detectors skip work that cannot find anything: each detector's
`quiet(text)` checks what its passes cannot match without (`@`, `+`, `(`, a run of 15 token characters, 8
digits, a keyword…), `hits` skips single passes the same way, tokens come from `bytes.find` over a translated
copy and digit runs from a literal-led pattern over another. `Text(s, exhaustive=True)` turns every
shortcut off (every check says "maybe", tokens from the reference regexes). The properties here: on
generated text made of near misses of every detector, both ways give the same hits, and `quiet` is never
True where the full passes find something.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.privacy.detectors import Scanner
from app.privacy.patterns import MAX_TOKEN, Text, _reference_tokens, _run_tokens, _TOKEN_MAP
from app.privacy.pii import _NUMBER, _NUMBER_IN_DIGIT_MAP, PiiDetector
from app.privacy.secrets_detector import _ASSIGNMENT_WORDS, _BEARER_WORDS, _KEYWORDS, SecretDetector
from tests.unit.test_privacy_corpus import NEGATIVES, POSITIVES, rand

SCANNERS = [
    Scanner.build(),
    Scanner.build(disabled=["secret.high_entropy", "pii.phone"]),
    Scanner.build(disabled=["secrets"], allowlist=["jane.doe@acme.io"]),
    Scanner.build(disabled=["pii.email", "pii.iban", "secret.password_assignment", "secret.bearer_token"]),
    Scanner.build(disabled=["pii.phone", "pii.payment_card", "pii.iban", "pii.national_id"]),  # e-mail only
    Scanner.build(disabled=["secrets", "pii"]),
]

# Pieces of what each detector looks for, whole and cut short, in both cases, next to what stops a match.
_FRAGMENTS = [
    "sk-proj-", "sk-ant-api03-", "AKIA", "ASIA", "ghp_", "github_pat_", "glpat-", "xoxb-", "sk_live_", "AIza",
    "GOCSPX-", "hf_", "gsk_", "xai-", "npm_", "pypi-AgE", "SK", "dop_v1_", "shpat_", "dapi", "tskey-auth-",
    "AGE-SECRET-KEY-1", "eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxIn0.", "SG.", "hvs.", "AccountKey=", "123456789:AA",
    "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY", "-----END RSA PRIVATE KEY-----",
    "PuTTY-User-Key-File-2", "hooks.slack.com/services/T0AB/B0CD/", "https://user:", "@db.internal:5432",
    "://", "jane.doe@acme.io", "noreply@example.com", "@", "+44 20 7946 0958", "+1 ", "+", "(415) 555-0132",
    "415-555-0132", "(", ")", "4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005",
    "DE89 3704 0044 0532 0130 00", "DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "078-05-1120",
    "536-22-1000", "12345678Z", "86095742719", "255081416802538", "2024-01-15", "1.2.3.4", "0x1f",
    "password", "PassWord", "passwd", "pwd", "secret", "SECRET", "token", "Token", "key", "api_key", "ApiKey",
    "client-secret", "private_key_path", "tokens", "bearer ", "Bearer ", "Basic ", "BASIC\t", "basically",
    " = ", "=", "==", "===", ": ", ":=", "=>", '"', "'", "`", "\\n", "\\", "\n", "\t", " ", ".", "/", "-", "_",
    "sha512-", "h1:", "base64,", "data:image/png;base64,", "«TG_SECRET_1»", "${TOKEN}", "<your-key>",
    "é", "ü", "€", "\u00ab", "\ud800", "\x00", "١٢٣",
]
_TOKENISH = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-=", min_size=1,
                    max_size=70)
_NOISE = st.text(alphabet=st.sampled_from(list("aZ09 -_+/=.:@\\\"'(){}\t\né€")), max_size=12)
_RANDOM_KEY = st.integers(12, 64).map(rand)  # mixed-case alphanumerics: high entropy, IBAN/key bodies
_KEYED = st.tuples(st.sampled_from(_FRAGMENTS), _RANDOM_KEY).map("".join)  # "Bearer " + key, "hvs." + key…
TEXT = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), _TOKENISH, _NOISE, _RANDOM_KEY, _KEYED),
                max_size=24).map("".join)


def _hits(scanner: Scanner, text: str, *, exhaustive: bool) -> list:
    return list(scanner.text_hits(Text(text, exhaustive=exhaustive)))


@settings(max_examples=600, deadline=None)
@given(TEXT)
def test_shortcuts_find_exactly_what_the_full_passes_find(text: str) -> None:
    for scanner in SCANNERS:
        assert _hits(scanner, text, exhaustive=False) == _hits(scanner, text, exhaustive=True)


def _rule_names() -> list[str]:
    names: list[str] = []
    SecretDetector(lambda rule: names.append(rule) or True)
    PiiDetector(lambda rule: names.append(rule) or True)
    return sorted(set(names))


ONE_RULE_SCANNERS = [Scanner([SecretDetector(rule.__eq__), PiiDetector(rule.__eq__)]) for rule in _rule_names()]


def test_labelled_positives_with_only_their_rule_on() -> None:
    for name, text, rule in POSITIVES:
        scanner = Scanner([SecretDetector(rule.__eq__), PiiDetector(rule.__eq__)])
        found = _hits(scanner, text, exhaustive=False)
        assert found == _hits(scanner, text, exhaustive=True) and found, name


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_shortcuts_with_a_single_rule_on(text: str) -> None:
    """A detector with a single pass on skips the others and still finds what that pass finds."""
    for scanner in ONE_RULE_SCANNERS:
        assert _hits(scanner, text, exhaustive=False) == _hits(scanner, text, exhaustive=True)


@settings(max_examples=600, deadline=None)
@given(TEXT)
def test_quiet_only_when_the_full_passes_find_nothing(text: str) -> None:
    on = lambda rule: True  # noqa: E731
    for det in (SecretDetector(on), PiiDetector(on)):
        if det.quiet(Text(text)):
            assert list(det.hits(Text(text, exhaustive=True))) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_shortcuts_on_any_unicode_text(text: str) -> None:
    assert _hits(SCANNERS[0], text, exhaustive=False) == _hits(SCANNERS[0], text, exhaustive=True)


def test_labelled_corpus_same_both_ways() -> None:
    for scanner in SCANNERS:
        for _, text, _ in POSITIVES:
            assert _hits(scanner, text, exhaustive=False) == _hits(scanner, text, exhaustive=True)
        for _, text in NEGATIVES:
            assert _hits(scanner, text, exhaustive=False) == _hits(scanner, text, exhaustive=True) == []


def test_a_clean_chat_message_is_quiet_for_every_detector() -> None:
    t = Text("Write a haiku about routers (or switches). Keep it short: three lines, no title, no rhyme.")
    assert all(det.quiet(t) for det in SCANNERS[0].detectors)
    # each shortcut's trigger alone makes its detector run its passes
    secrets, pii = SCANNERS[0].detectors
    for trigger in ("ops@acme.io", "-----BEGIN ", "abcdefghijklmno", "api_key = x", "token: x", "Bearer x"):
        assert not secrets.quiet(Text(trigger)), trigger
    for trigger in ("a@b", "(415) 555-0132", "1234 5678", "abcdefghijklmno"):
        assert not pii.quiet(Text(trigger)), trigger
    assert pii.quiet(Text("call +33 6 12 (41)"))  # phones need 9 digits or more


# ----------------------------------------------------------------------------------- the pieces alone
@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_TOKENISH, _NOISE, st.sampled_from(["\\n", "\\u", "\\x", "==", "===", "=a", "é"])),
                max_size=20).map("".join))
def test_tokens_from_runs_equal_the_reference_regexes(text: str) -> None:
    assert _run_tokens(text, text.encode("latin-1", "replace").translate(_TOKEN_MAP)) == _reference_tokens(text)


def test_tokens_at_the_length_limit() -> None:
    for n in (MAX_TOKEN - 2, MAX_TOKEN - 1, MAX_TOKEN, MAX_TOKEN + 1):
        for tail in ("", "=", "==", "===", "=x", " ", "\n"):
            for head in ("", " ", "\\n", "é"):
                text = head + "A" * n + tail + " sk-" + "b1" * 12
                assert Text(text).tokens == _reference_tokens(text), (n, tail, head)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 -.+/\\nrtaZ_é٣")), max_size=80))
def test_digit_runs_on_the_digit_map_are_the_same_spans(text: str) -> None:
    expected = [m.span() for m in _NUMBER.finditer(text)]
    assert [m.span() for m in _NUMBER_IN_DIGIT_MAP.finditer(Text(text).digit_map)] == expected


def test_keyword_checks_cover_every_keyword_in_any_case() -> None:
    for keyword, _ in _KEYWORDS:
        assert any(rx.search(keyword) for rx in _ASSIGNMENT_WORDS), keyword
        for text in (keyword.upper(), b"my" + keyword + b"_x"):
            assert any(rx.search(text.lower()) for rx in _ASSIGNMENT_WORDS)
    assert _BEARER_WORDS.search(b"bearer") and _BEARER_WORDS.search(b"basic")
    for near in (b"toke", b"ke", b"kex", b"passx", b"pw", b"pwx", b"secre", b"ecret", b"beare", b"basi"):
        assert not any(rx.search(near) for rx in _ASSIGNMENT_WORDS) and not _BEARER_WORDS.search(near), near


# ------------------------------------------------------------------------------ texts found clean before
def _requests(pool: list[str], shapes: list[list[int]]) -> list[list[tuple[str, str]]]:
    return [[(f"messages[{j}].content[0].text", pool[i % len(pool)]) for j, i in enumerate(shape)]
            for shape in shapes]


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=6),
       st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=5), min_size=1, max_size=8))
def test_remembering_clean_texts_gives_the_same_first_finding(pool: list[str], shapes: list[list[int]]) -> None:
    """A conversation re-sends its texts in new positions: the scanner that remembers clean texts answers
    each request exactly as one that scans the whole request every time."""
    cached, fresh = Scanner.build(), Scanner.build(clean_cache_chars=0)
    for pairs in _requests(pool, shapes):
        assert cached.first(pairs) == fresh.first(pairs)


def test_a_wrapped_base64_line_is_clean_only_before_a_separator() -> None:
    """The one place where what follows a text matters: a 64-character token right before a newline is a
    line of wrapped base64. Clean in the middle of a request is not clean as its last text."""
    text = "see " + rand(64)
    cached, fresh = Scanner.build(), Scanner.build(clean_cache_chars=0)
    for texts in ([text, "hello"], ["hello", text], [text], [text, "hello"], ["hello", text]):
        pairs = [(f"t{i}", t) for i, t in enumerate(texts)]
        assert cached.first(pairs) == fresh.first(pairs)
    assert fresh.first([("t0", "hello"), ("t1", text)]).rule == "secret.high_entropy"


def test_corpus_in_conversations() -> None:
    texts = [t for _, t in NEGATIVES] + [t for _, t, _ in POSITIVES]
    cached, fresh = Scanner.build(), Scanner.build(clean_cache_chars=0)
    history: list[str] = []
    for text in texts:  # a conversation growing by one text a turn, each turn re-sending all before it
        history.append(text)
        pairs = [(f"messages[{i}].content[0].text", t) for i, t in enumerate(history[-12:])]
        assert cached.first(pairs) == fresh.first(pairs)
        assert cached.first(pairs[:-1]) == fresh.first(pairs[:-1])


def test_clean_texts_stay_within_their_budget() -> None:
    scanner = Scanner.build(clean_cache_chars=1000)
    clean = scanner.clean
    assert clean is not None
    for i in range(200):
        text = f"note {i}: nothing to see here, only words and more words"
        assert scanner.first([("a", text), ("b", "and a second one")]) is None
        assert clean._chars == sum(map(len, clean._known)) <= 1000
    second = ("b", "and a second one")
    assert clean.unknown([("a", "note 199: nothing to see here, only words and more words"), second]) == []
    assert clean.unknown([("a", "note 0: nothing to see here, only words and more words"), second]) == [0]
    assert clean.unknown([second, ("a", "note 199: nothing to see here, only words and more words")]) == [1]
    clean.clear()
    assert clean._chars == 0 and clean.unknown([("b", "and a second one")]) == [0]


def test_no_remembering_with_user_rules() -> None:
    from app.privacy.rules import UserRule

    assert Scanner.build(rules=[UserRule("r", regexes=["a\\s+b"])]).clean is None
    assert Scanner.build(clean_cache_chars=0).clean is None
