"""The scanner: every enabled detector over every text of a request.

The texts of a request are joined into one string (separated by "\\n\\0\\n", which no pattern matches
across) so a request with hundreds of parts costs one pass per pattern instead of hundreds; a hit is
mapped back to its place by bisecting the offsets. `first()` stops at the first hit (the decision needs no
more) and skips texts found clean before (`CleanTexts`); `findings()` collects them all (for `privacy test`
and redaction).
"""

from __future__ import annotations

import threading
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


CLEAN_CACHE_CHARS = 2_000_000  # characters of clean text remembered (UCS-1..4: 2-8 MB), oldest out first


class CleanTexts:
    """Texts in which the detectors found nothing, remembered so that a request re-sending them (each
    turn of a conversation re-sends the history, the system prompt, the tool results) scans only what is
    new. Exact, not a heuristic: no built-in pattern matches across the separator ("\\n\\0\\n") or looks
    past the one next to a text, and what comes before a text (a separator or nothing) never changes a
    hit; what comes after does in one place (a 64/76-character token right before "\\n" is a line of
    wrapped base64, not a key), so a text is `True` here once found clean as a request's last text (end
    of string after it: clean anywhere) and `False` when only found clean with a separator after it.
    tests/unit/test_privacy_fast_paths.py checks this against scanning whole requests. The keys are the
    texts themselves (no hash collisions), so up to `max_chars` of clean request text stays in memory."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self._known: dict[str, bool] = {}
        self._chars = 0
        self._lock = threading.Lock()  # adding and evicting; look-ups are single dict reads

    def unknown(self, pairs: list[tuple[str, str]]) -> list[int]:
        """Indices of the texts not known to be clean where they are (the last one needs `True`)."""
        get = self._known.get
        todo = []
        i = 0
        for _, text in pairs:  # a plain loop: cheaper than a comprehension for the usual few texts
            if get(text) is None:
                todo.append(i)
            i += 1
        if pairs and get(pairs[-1][1]) is False:  # clean so far only with a separator after it
            todo.append(i - 1)
        return todo

    def add(self, pairs: list[tuple[str, str]], indices: Iterable[int]) -> None:
        last = len(pairs) - 1
        limit = self.max_chars // 8  # one huge text does not push out everything else
        with self._lock:
            known = self._known
            for i in indices:
                text = pairs[i][1]
                if len(text) > limit:
                    continue
                before = known.get(text)
                if before is None:
                    self._chars += len(text)
                if not before:
                    known[text] = i == last
            while self._chars > self.max_chars and known:
                oldest = next(iter(known))
                del known[oldest]
                self._chars -= len(oldest)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
            self._chars = 0


class Scanner:
    def __init__(self, detectors: list[Detector], *, allowlist: Iterable[str] = (),
                 clean_cache_chars: int = CLEAN_CACHE_CHARS):
        self.detectors = detectors
        self.allowlist = frozenset(allowlist)
        # User rules hold arbitrary regexes, which may match across the separator: no per-text verdicts then.
        exact_per_text = all(isinstance(d, (SecretDetector, PiiDetector)) for d in detectors)
        self.clean = CleanTexts(clean_cache_chars) if clean_cache_chars > 0 and exact_per_text else None

    @classmethod
    def build(cls, *, disabled: Iterable[str] = (), rules: list[UserRule] | None = None,
              allowlist: Iterable[str] = (), home: str | None = None,
              clean_cache_chars: int = CLEAN_CACHE_CHARS) -> "Scanner":
        enabled = rule_enabled(frozenset(disabled))
        detectors: list[Detector] = [SecretDetector(enabled), PiiDetector(enabled)]
        if rules:
            detectors.append(RuleDetector(rules, home=home))
        return cls(detectors, allowlist=allowlist, clean_cache_chars=clean_cache_chars)

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
        """The first finding, or None. Texts found clean before (`clean`) are not scanned again; a clean
        request costs one join and each detector's `quiet`; the places are only worked out for a hit."""
        pairs = texts if isinstance(texts, list) else list(texts)
        clean = self.clean
        if clean is None or not pairs:
            return self._first(pairs)
        todo = clean.unknown(pairs)
        if not todo:
            return None
        if len(todo) < len(pairs):
            # Only the new texts, each with a separator on the sides it has one in the request. Nothing
            # found: the request is clean. Something found: the full scan names the first finding exactly.
            last = len(pairs) - 1
            joined = SEPARATOR.join([pairs[i][1] for i in todo])
            joined = (SEPARATOR if todo[0] else "") + joined + (SEPARATOR if todo[-1] != last else "")
            if self._first_hit(joined) is None:
                clean.add(pairs, todo)
                return None
        found = self._first(pairs)
        if found is None:
            clean.add(pairs, range(len(pairs)))
        return found

    def _first(self, pairs: list[tuple[str, str]]) -> Finding | None:
        joined = pairs[0][1] if len(pairs) == 1 else SEPARATOR.join([text for _, text in pairs])
        hit = self._first_hit(joined)
        if hit is None:
            return None
        places, starts, _ = _join(pairs)
        return _locate(hit, places, starts, joined)

    def _first_hit(self, joined: str) -> Hit | None:
        t = Text(joined)
        allow = self.allowlist
        for det in self.detectors:  # text_hits, inlined: this runs for every request
            if det.quiet(t):
                continue
            for hit in det.hits(t):
                if allow and joined[hit.start:hit.end] in allow:
                    continue
                return hit
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
