"""What every detector shares: the scanned text, the hit it reports, and small validators.

Speed notes (measured, see docs/privacy-detectors.md): CPython's `re` skips ahead fast only when a pattern
starts with a literal; a pattern that starts with a character class costs ~10 ns per character of text
and an alternation of many branches far more. So detectors use a few character-class passes that find
*candidates* (long tokens, digit runs) and check them in Python, literal-anchored passes for everything
else, and search case-insensitive keywords in the text's lower-cased UTF-8 bytes (`bytes.lower` is
ASCII-only and ~15x faster than `str.lower` on non-ASCII text; `(?i)` disables the literal fast path).
Classes are ASCII (`[0-9]`, not `\\d`, which tests Unicode categories per character).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterator, Protocol


@dataclass(frozen=True, slots=True)
class Hit:
    """A detector match inside one text: which rule, and where (never the matched text itself)."""

    rule: str  # e.g. "secret.aws_access_key", "pii.email", "rule.medical"
    start: int
    end: int
    redactable: bool = True  # False: the span does not cover what is sensitive (file paths, classifier)


_TOKEN_CHARS = r"A-Za-z0-9+/_\-"
_TOKEN = re.compile(rf"[^{_TOKEN_CHARS}]([{_TOKEN_CHARS}]{{15,}}={{0,2}})(?![{_TOKEN_CHARS}=])")
_TOKEN_AT_START = re.compile(rf"([{_TOKEN_CHARS}]{{15,}}={{0,2}})(?![{_TOKEN_CHARS}=])")
_ESCAPE_LETTERS = frozenset("nrtbfu")
MAX_TOKEN = 1024  # longer runs are base64 payloads (images, fonts, archives), not credentials


class Text:
    """The text being scanned plus what several detectors derive from it, computed once and shared:
    its lower-cased UTF-8 bytes, its tokens (runs of 15-1024 base64/URL-safe characters), and the cheap
    facts the detectors check before a pass (`may_contain`, `has_long_run`) to skip passes that cannot
    match. `exhaustive=True` skips nothing and finds tokens with the reference regexes: the tests compare
    both ways on generated text (the facts are necessary conditions, so both find the same hits)."""

    __slots__ = ("s", "ascii", "exhaustive", "_lower", "_tokens", "_latin1", "_tmap", "_long_run", "_dmap",
                 "_numbers")

    def __init__(self, s: str, *, exhaustive: bool = False):
        self.s = s
        self.ascii = s.isascii()
        self.exhaustive = exhaustive
        self._lower: bytes | None = None
        self._tokens: list[tuple[int, str]] | None = None
        self._latin1: bytes | None = None
        self._tmap: bytes | None = None
        self._long_run: bool | None = None
        self._dmap: bytes | None = None
        self._numbers: bool | None = None

    def may_contain(self, literal: str) -> bool:
        """False only when `literal` (which a pattern cannot match without) is not in the text. One
        character is a `memchr`: ~50 ns for a few KB, against ~1 µs for a `re` scan that finds nothing."""
        return self.exhaustive or literal in self.s

    @property
    def latin1(self) -> bytes:
        """`s` with one byte per character (ASCII as is, Latin-1 as its byte, anything else as `?`): byte
        offsets are character offsets, and a pattern of ASCII classes finds the same spans in it as in `s`."""
        if self._latin1 is None:
            self._latin1 = self.s.encode("latin-1", "replace")
        return self._latin1

    @property
    def has_long_run(self) -> bool:
        """Is there a run of 15+ token characters? Without one there is no token, no PuTTY header and no
        Slack webhook path. (Always True when exhaustive.)"""
        if self._long_run is None:
            if self.exhaustive:
                self._long_run = True
            elif len(self.s) < 15:
                self._long_run = False
            else:
                if self._latin1 is None:
                    self._latin1 = self.s.encode("latin-1", "replace")
                self._tmap = self._latin1.translate(_TOKEN_MAP)
                self._long_run = _RUN in self._tmap
        return self._long_run

    @property
    def digit_map(self) -> bytes:
        """`latin1` with every ASCII digit as `0`: a digit-run pattern can then start with a literal, which
        CPython's `re` finds ~3x faster than a leading `[0-9]`, and gives the same spans."""
        if self._dmap is None:
            self._dmap = self.latin1.translate(_DIGIT_MAP)
        return self._dmap

    @property
    def may_have_number(self) -> bool:
        """Are there 8 ASCII digits, the fewest any digit-run pattern matches? (True when exhaustive.)"""
        if self._numbers is None:
            self._numbers = self.exhaustive or (len(self.s) >= 8 and self.digit_map.count(b"0") >= 8)
        return self._numbers

    @property
    def tokens(self) -> list[tuple[int, str]]:
        """(start, token) for every token, in order."""
        if self._tokens is None:
            if self.exhaustive:
                self._tokens = _reference_tokens(self.s)
            elif not self.has_long_run:
                self._tokens = []
            else:
                assert self._tmap is not None
                self._tokens = _run_tokens(self.s, self._tmap)
        return self._tokens

    @property
    def lower_bytes(self) -> bytes:
        if self._lower is None:
            self._lower = self.s.encode("utf-8", "surrogatepass").lower()
        return self._lower

    def char_offset(self, byte_offset: int) -> int:
        """A byte offset into `lower_bytes` (at a character boundary) as a character offset into `s`."""
        if self.ascii:
            return byte_offset
        return len(self.lower_bytes[:byte_offset].decode("utf-8", "surrogatepass"))


def _reference_tokens(s: str) -> list[tuple[int, str]]:
    """Tokens by the definition: `_TOKEN_AT_START` and `_TOKEN` (~10 ns per character)."""
    out = []
    first = _TOKEN_AT_START.match(s)
    if first is not None and len(first.group(1)) <= MAX_TOKEN:
        out.append((0, first.group(1)))
    for m in _TOKEN.finditer(s):
        tok = m.group(1)
        if len(tok) <= MAX_TOKEN:
            start = m.start(1)
            if s[start - 1] == "\\" and tok[0] in _ESCAPE_LETTERS:  # JSON text: "…\\nAKIA…"
                start, tok = start + 1, tok[1:]
            out.append((start, tok))
    return out


def _run_tokens(s: str, tmap: bytes) -> list[tuple[int, str]]:
    """The same tokens as `_reference_tokens`, from the runs of `a` in `tmap` (`s` with token characters
    as `a`, others as a space) found with `bytes.find` (~1 ns per character). A maximal run R of 15+ is a
    token when followed by at most two `=` and then no token character (the regexes' lookahead); with
    three `=`, or `=` then a token character, it is none (backtracking cannot help: fewer `=` leave a `=`
    next, a shorter run leaves a token character next)."""
    out = []
    find = tmap.find
    n = len(s)
    i = find(_RUN)
    while i != -1:
        e = find(b" ", i + 15)
        if e == -1:
            e = n
        end = e
        if e < n and s[e] == "=":
            end = e + 1
            if end < n and s[end] == "=":
                end += 1
            if end < n and (s[end] == "=" or tmap[end] == 97):  # a third "=", or "=" glued to more token
                i = find(_RUN, end)  # the next run may start right here
                continue
        if end - i <= MAX_TOKEN:
            if i and s[i - 1] == "\\" and s[i] in _ESCAPE_LETTERS:  # JSON text: "…\\nAKIA…"
                out.append((i + 1, s[i + 1:end]))
            else:
                out.append((i, s[i:end]))
        i = find(_RUN, end + 1)
    return out


_TOKEN_MAP = bytes(97 if chr(c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-" else 32
                   for c in range(256))
_DIGIT_MAP = bytes(48 if 48 <= c <= 57 else c for c in range(256))
_RUN = b"a" * 15


class Detector(Protocol):
    def quiet(self, text: Text) -> bool:
        """True only when `hits(text)` would yield nothing (checked cheaply; when unsure, False)."""
        ...

    def hits(self, text: Text) -> Iterator[Hit]: ...


# ------------------------------------------------------------------------------------------ helpers
def shannon_entropy(s: str) -> float:
    """Bits per character."""
    n = len(s)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


_PLACEHOLDER = re.compile(
    r"""^(?:
        \$\{?[A-Za-z_][\w.]*\}?        # $VAR, ${VAR}, ${env.VAR}
      | %\(?[\w.]*\)?s?%?               # %s, %(name)s, %VAR%
      | \{\{?[^}]*\}\}?                 # {name}, {{ template }}
      | <[^>]*>                         # <your-token>
      | \[[^\]]*\]                      # [REDACTED]
      | [*xX•#.\-_]+                    # ****, xxxx, ....
      | (?i:«TG_[A-Z_]+_\d+»)          # our own redaction placeholders
      | (?i:(?:your|my|some|the|new|old)[-_]?\w*)
      | (?i:(?:changeme|change[-_]me|password|passwd|pass|secret|token|example|sample|dummy|test|testing|
             placeholder|redacted|hidden|none|null|nil|undefined|true|false|todo|fixme|xxx|foo|bar|baz|
             admin|root|user|username|demo|default|string|value|pwd|abc123|123456|12345678|qwerty)\d*)
      | (?i:(?:os\.environ|process\.env|env\(|getenv|secrets?\.|config\.|settings\.|self\.|this\.).*)
    )$""",
    re.VERBOSE,
)


def is_placeholder(value: str) -> bool:
    """True for values that stand in for a secret rather than being one (`${TOKEN}`, `<key>`, `****`)."""
    return bool(_PLACEHOLDER.match(value))


def has_digit_and_letter(s: str) -> bool:
    return not _DIGITS.isdisjoint(s) and not _LETTERS.isdisjoint(s)


_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
DIGITS = _DIGITS
