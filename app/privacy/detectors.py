"""The scanner: every enabled detector over every text of a request.

The texts of a request are joined into one string (separated by "\\n\\0\\n", which no pattern matches
across) so a request with hundreds of parts costs one pass per pattern instead of hundreds; a hit is
mapped back to its place by bisecting the offsets. `first()` stops at the first hit (the decision needs no
more); `findings()` collects them all (for `privacy test` and redaction).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from app.privacy.patterns import Detector, Hit, Text
from app.privacy.pii import PiiDetector
from app.privacy.rules import RuleDetector, UserRule
from app.privacy.secrets_detector import SecretDetector

SEPARATOR = "\n\x00\n"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector hit located in the request: the rule's name and where, never the matched text."""

    rule: str
    place: str  # e.g. "messages[3].content[0].text"
    start: int  # offsets inside that place's text
    end: int
    redactable: bool = True


def rule_enabled(disabled: frozenset[str]) -> Callable[[str], bool]:
    """A predicate: is `rule` on, given disabled names (a family such as "pii.phone" or "secrets", or a
    single rule such as "secret.high_entropy")."""

    def enabled(rule: str) -> bool:
        if rule in disabled or (rule.startswith("secret.") and "secrets" in disabled):
            return False
        return not any(rule.startswith(d + ".") for d in disabled)

    return enabled


class Scanner:
    def __init__(self, detectors: list[Detector], *, allowlist: Iterable[str] = ()):
        self.detectors = detectors
        self.allowlist = frozenset(allowlist)

    @classmethod
    def build(cls, *, disabled: Iterable[str] = (), rules: list[UserRule] | None = None,
              allowlist: Iterable[str] = (), home: str | None = None) -> "Scanner":
        enabled = rule_enabled(frozenset(disabled))
        detectors: list[Detector] = [SecretDetector(enabled), PiiDetector(enabled)]
        if rules:
            detectors.append(RuleDetector(rules, home=home))
        return cls(detectors, allowlist=allowlist)

    def text_hits(self, text: str | Text) -> Iterator[Hit]:
        """Every hit in one text (detector order: secrets, personal data, user rules)."""
        t = text if isinstance(text, Text) else Text(text)
        allow = self.allowlist
        for det in self.detectors:
            if det.quiet(t):
                continue
            for hit in det.hits(t):
                if allow and t.s[hit.start:hit.end] in allow:
                    continue
                yield hit

    def first(self, texts: Iterable[tuple[str, str]]) -> Finding | None:
        """The first finding, or None. A clean request costs one join and each detector's `quiet`; the
        places are only worked out for a hit."""
        pairs = texts if isinstance(texts, list) else list(texts)
        joined = pairs[0][1] if len(pairs) == 1 else SEPARATOR.join([text for _, text in pairs])
        t = Text(joined)
        allow = self.allowlist
        for det in self.detectors:  # text_hits, inlined: this runs for every request
            if det.quiet(t):
                continue
            for hit in det.hits(t):
                if allow and joined[hit.start:hit.end] in allow:
                    continue
                places, starts, _ = _join(pairs)
                return _locate(hit, places, starts, joined)
        return None

    def findings(self, texts: Iterable[tuple[str, str]]) -> list[Finding]:
        """Every finding, ordered by place and offset. Overlapping hits of different rules are all kept."""
        places, starts, joined = _join(texts)
        out = [_locate(hit, places, starts, joined) for hit in self.text_hits(joined)]
        order = {p: i for i, p in enumerate(places)}
        out.sort(key=lambda f: (order[f.place], f.start, f.end))
        return out


def _join(texts: Iterable[tuple[str, str]]) -> tuple[list[str], list[int], str]:
    places: list[str] = []
    chunks: list[str] = []
    starts: list[int] = []
    pos = 0
    step = len(SEPARATOR)
    for place, text in texts:
        places.append(place)
        chunks.append(text)
        starts.append(pos)
        pos += len(text) + step
    return places, starts, SEPARATOR.join(chunks)


def _locate(hit: Hit, places: list[str], starts: list[int], joined: str) -> Finding:
    i = max(0, bisect_right(starts, hit.start) - 1)
    base = starts[i]
    limit = (starts[i + 1] - len(SEPARATOR)) if i + 1 < len(starts) else len(joined)
    start = min(hit.start, limit)
    return Finding(hit.rule, places[i], start - base, min(hit.end, limit) - base, hit.redactable)
