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
    its lower-cased UTF-8 bytes and its tokens (runs of 15-1024 base64/URL-safe characters)."""

    __slots__ = ("s", "ascii", "_lower", "_tokens")

    def __init__(self, s: str):
        self.s = s
        self.ascii = s.isascii()
        self._lower: bytes | None = None
        self._tokens: list[tuple[int, str]] | None = None

    @property
    def tokens(self) -> list[tuple[int, str]]:
        """(start, token) for every token, in order."""
        if self._tokens is None:
            s = self.s
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
            self._tokens = out
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


class Detector(Protocol):
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
