"""User rules: keywords, regexes and file-path globs that keep a request local.

    privacy:
      rules:
        - name: medical
          keywords: [diagnosis, "blood test"]     # whole words, case-insensitive (ASCII letters)
          regexes: ['\\bpatient[-_ ]?id\\b']       # Python `re` syntax, case-sensitive unless (?i)
          paths: ["~/Documents/Medical/**"]       # globs: ** any depth, * one segment, ? one char

A path rule fires when a matching path appears anywhere in the request: a `Read` tool call's
`file_path`, a file header Aider put above its content, a `cat` command. `~` matches both the literal `~`
and the home directory. Path hits are not redactable: what is sensitive is the file's content, which no
span marks. Relative paths cannot be matched against absolute globs (documented limit).

Rule names are `rule.<name>`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator

from app.privacy.patterns import Hit, Text

_PATH_CHARS = r"[^\s\"'`<>|*?]"


@dataclass(slots=True)
class UserRule:
    name: str
    keywords: list[str] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def glob_to_regex(glob: str) -> str:
    """A regex source matching `glob` inside text (not anchored). `dir/**` also matches `dir` itself."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        if glob.startswith("/**", i) and i + 3 == n:
            out.append(f"(?:/{_PATH_CHARS}*)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(f"{_PATH_CHARS}*")
            i += 2
            if i < n and glob[i] == "/":
                out.append("(?:/)?")
                i += 1
            continue
        if ch == "*":
            out.append(r"[^\s\"'`<>|*?/]*")
        elif ch == "?":
            out.append(r"[^\s\"'`<>|*?/]")
        else:
            out.append(re.escape(ch))
        i += 1
    out.append(r"(?![A-Za-z0-9_.\-])")  # the whole name: `Medical` is not `MedicalBills`
    return "".join(out)


def path_variants(glob: str, home: str | None = None) -> list[str]:
    """The glob as written plus, for `~/…`, the home-directory form."""
    if glob.startswith("~/") or glob == "~":
        home = (home or os.path.expanduser("~")).rstrip("/")
        return [glob, home + glob[1:]]
    return [glob]


def _wrap(source: str) -> "re.Pattern[str]":
    """A user regex, compiled alone: its flags and groups are the user's (validated at config time)."""
    return re.compile(source)


class RuleDetector:
    """All user rules: keywords (case-insensitive, searched in the lower-cased bytes, one literal-anchored
    pass per keyword), each regex alone (its flags and groups are the user's), paths in one pass."""

    def __init__(self, rules: list[UserRule], *, home: str | None = None):
        self._keywords: list[tuple[re.Pattern[bytes], str]] = []
        self._regexes: list[tuple[re.Pattern[str], str]] = []
        path_groups: list[str] = []
        self._path_names: dict[str, str] = {}
        for i, rule in enumerate(rules):
            name = f"rule.{rule.name}"
            for word in rule.keywords:
                kw = word.strip().lower().encode("utf-8", "surrogatepass")
                self._keywords.append((_word_regex(kw), name))
            for rx in rule.regexes:
                self._regexes.append((_wrap(rx), name))
            if rule.paths:
                variants = [glob_to_regex(v) for p in rule.paths for v in path_variants(p, home)]
                path_groups.append(f"(?P<p{i}>{'|'.join(variants)})")
                self._path_names[f"p{i}"] = name
        self._paths = re.compile("|".join(path_groups)) if path_groups else None

    def quiet(self, text: Text) -> bool:
        """Never: a user's regex can match anything (the scan always runs when there are rules)."""
        return False

    def hits(self, text: Text) -> Iterator[Hit]:
        if self._keywords:
            data = text.lower_bytes
            for rx, name in self._keywords:
                for m in rx.finditer(data):
                    yield Hit(name, text.char_offset(m.start()), text.char_offset(m.end()))
        s = text.s
        for rx, name in self._regexes:
            for m in rx.finditer(s):
                if m.end() > m.start():
                    yield Hit(name, m.start(), m.end())
        if self._paths is not None:
            for m in self._paths.finditer(s):
                if m.end() > m.start() and m.lastgroup:
                    yield Hit(self._path_names[m.lastgroup], m.start(), m.end(), redactable=False)


def _word_regex(kw: bytes) -> "re.Pattern[bytes]":
    """`kw` as a whole word: literal first (fast), then the boundary checks."""
    before = rb"(?<![a-z0-9_]" + re.escape(kw) + rb")" if kw[:1].isalnum() else b""
    after = rb"(?![a-z0-9_])" if kw[-1:].isalnum() else b""
    return re.compile(re.escape(kw) + before + after)
