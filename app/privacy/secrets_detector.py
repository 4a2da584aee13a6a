"""Secrets: provider API keys and tokens, private keys, passwords in URLs and assignments, bearer tokens,
JWTs, and high-entropy strings.

Hand-written after measuring detect-secrets 1.5 (docs/privacy-detectors.md): its plugins miss the keys
agents meet most (Anthropic, current OpenAI `sk-proj-`, Google, Hugging Face, Groq…), it scans line by line
through a plugin chain (two orders of magnitude slower on a 400 KB request), and its entropy plugins flag
git SHAs and lockfile hashes. The key prefixes below are facts about the providers' token formats.

Three kinds of pass over a text:
  1. tokens: runs of 15+ base64/URL-safe characters. Each is checked against the known key prefixes,
     the characters just before it (`SG.`, `hvs.`, `AccountKey=`, a bot id and `:`), and for entropy;
  2. literal anchors: `-----BEGIN … PRIVATE KEY`, `PuTTY-User-Key-File`, `://user:pass@`, Slack webhooks,
     `eyJ…` JWTs (header must decode to JSON with "alg"/"typ");
  3. keywords in the lower-cased bytes: `password = …`, `api_key: …`, `client_secret=…`, `Bearer …`.
Rule names are `secret.<kind>`; `secrets` switches them all off, `secret.<kind>` one.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Callable, Iterator

from app.privacy.patterns import DIGITS, LOWER, UPPER, Hit, Text, has_digit_and_letter, is_placeholder, \
    shannon_entropy

# ------------------------------------------------------------------------------- known prefixes
_E = r"(?![A-Za-z0-9_])"
_PREFIXED_ROWS: list[tuple[str, str, str]] = [  # (group, rule, regex anchored at the token start)
    ("aws_key", "secret.aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}" + _E),
    ("anthropic", "secret.anthropic_key", r"sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_\-]{40,}"),
    ("openai", "secret.openai_key", r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}"),
    ("github", "secret.github_token", r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}" + _E),
    ("github_pat", "secret.github_token", r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),
    ("gitlab", "secret.gitlab_token", r"(?:glpat|gldt|glft|glsoat|glrt|glptt|glcbt|glimt)-[A-Za-z0-9_\-]{20,}"),
    ("slack", "secret.slack_token", r"xox[abposr]-[0-9A-Za-z\-]{10,}"),
    ("stripe", "secret.stripe_key", r"[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("google", "secret.google_api_key", r"AIza[0-9A-Za-z_\-]{35}" + _E),
    ("google_oauth", "secret.google_oauth_secret", r"GOCSPX-[A-Za-z0-9_\-]{28}"),
    ("hf", "secret.huggingface_token", r"hf_[A-Za-z0-9]{30,}" + _E),
    ("groq", "secret.groq_key", r"gsk_[A-Za-z0-9]{48,}"),
    ("xai", "secret.xai_key", r"xai-[A-Za-z0-9]{60,}"),
    ("npm", "secret.npm_token", r"npm_[A-Za-z0-9]{36}" + _E),
    ("pypi", "secret.pypi_token", r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
    ("twilio", "secret.twilio_key", r"SK[0-9a-f]{32}" + _E),
    ("digitalocean", "secret.digitalocean_token", r"do[por]_v1_[a-f0-9]{64}"),
    ("shopify", "secret.shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("databricks", "secret.databricks_token", r"dapi[a-f0-9]{32}" + _E),
    ("tailscale", "secret.tailscale_key", r"tskey-[a-z]+-[A-Za-z0-9]{10,}-[A-Za-z0-9]{20,}"),
    ("age", "secret.age_key", r"AGE-SECRET-KEY-1[0-9A-Z]{58}"),
]
_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "A3T", "sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
             "glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glptt-", "glcbt-", "glimt-", "xox", "rk_", "sk_",
             "AIza", "GOCSPX-", "hf_", "gsk_", "xai-", "npm_", "pypi-", "SK", "dop_", "doo_", "dor_", "shp",
             "dapi", "tskey-", "AGE-SECRET-KEY-")
_SLASH_PREFIX = re.compile("/(?:" + "|".join(re.escape(p) for p in _PREFIXES) + ")")
_RANDOM_BODY = {"openai", "hf", "stripe", "slack", "gitlab"}  # the body must mix digits and letters

_SENDGRID_TAIL = re.compile(r"\.[A-Za-z0-9_\-]{43}(?![A-Za-z0-9_\-])")
_TELEGRAM_ID = re.compile(r"[0-9]{8,10}:$")

# ------------------------------------------------------------------------------------ entropy
_HEX_OR_UUID = re.compile(r"[0-9a-fA-F\-]+")
_INTEGRITY = ("sha1-", "sha224-", "sha256-", "sha384-", "sha512-", "md5-", "sha256:", "sha512:", "h1:", "base64,")
_MIN_ENTROPY = 3.6  # bits/char for 20-31 chars; random base62/64 tokens score ~4.0-4.5, identifiers lower


def high_entropy(tok: str, text: str, start: int) -> bool:
    """A random-looking token that no other rule names. Not: hex (git SHAs, digests, UUIDs), integrity
    hashes (`sha512-…`, `h1:…`, after `base64,`), wrapped base64 lines (PEM/MIME), words, identifiers, paths."""
    n = len(tok)
    if n < 20 or UPPER.isdisjoint(tok) or LOWER.isdisjoint(tok) or DIGITS.isdisjoint(tok):
        return False  # hex digests and UUIDs (one case) end here, cheaply
    if _HEX_OR_UUID.fullmatch(tok):
        return False
    if tok.startswith(_INTEGRITY) or text[max(0, start - 8):start].endswith(_INTEGRITY):
        return False
    if n in (64, 76) and text[start + n:start + n + 1] == "\n":
        return False  # one line of wrapped base64: a certificate or attachment, not a key
    digits = sum(tok.count(d) for d in "0123456789")
    if digits < 2:
        return False
    if "/" in tok and all(seg.isalpha() for seg in tok.split("/")[:-1] if seg):
        return False  # a path: words/words/file2
    if "_" in tok and all(p.isalpha() or p.isdigit() or not p for p in tok.split("_")):
        return False  # snake_case identifier: TEST_CASE_2024_RETRY
    return shannon_entropy(tok) >= _MIN_ENTROPY + (0.4 if n >= 32 else 0.0)


# --------------------------------------------------------------------------------- literal passes
def _jwt_ok(m: "re.Match[str]") -> bool:
    header = m.group(1)
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
    except (binascii.Error, ValueError):
        return False
    return b'"alg"' in decoded or b'"typ"' in decoded


_JWT = re.compile(r"(eyJ[A-Za-z0-9_\-]{8,})\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_MAX_KEY_BLOCK = 16_000  # an RSA-8192 PEM is ~6.5 KB
_PUTTY = re.compile(r"PuTTY-User-Key-File-[0-9]")
_URL_CRED = re.compile(r"://[^\s/:@\"'<>\\]{0,64}:([^\s/@\"'<>\\]{1,128})@(?=[\w\[])")
_SLACK_HOOK = re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+")


def _key_block_end(s: str, header_end: int) -> int:
    """Where the PEM block whose header ends at `header_end` ends (its `-----END …-----` line), or the
    header's end when no END follows within a key's size: the span covers the whole key for redaction."""
    end = s.find("-----END ", header_end, header_end + _MAX_KEY_BLOCK)
    if end == -1:
        return header_end
    close = s.find("-----", end + 9, end + 80)
    return close + 5 if close != -1 else header_end


def _url_password_ok(pw: str) -> bool:
    return len(pw) >= 3 and not is_placeholder(pw) and pw[0] not in "$%{<"


# -------------------------------------------------------------------------- keyword assignments
_ASSIGN_TAIL = (rb"(?P<sfx>[\w.\-]{0,20})\\?[\"']?[ \t]*(?::=|=>|=|:)[ \t]*(?P<q>\\?[\"'`])?"
                rb"(?P<v>[^\s\"'`\\,;(){}\[\]]{1,200})")
# `secretName:`, `private_key_path:`, `token_expires_at:`, `total_tokens:`: data *about* a secret.
_META_SUFFIX = re.compile(rb"(?:name|names|ref|id|ids|type|path|file|dir|url|uri|arn|version|count|len|length|size|"
                          rb"at|expiry|expires|ttl|env|var|field|header|prefix|hint|label|s)$")
_NUMERIC_LIKE = re.compile(rb"[0-9][0-9:\-./tz+]*")  # dates, times, versions, addresses, amounts
_KEY_QUALIFIER = re.compile(rb"(?:api|access|private|secret|signing|encryption|master|client|auth|app)[_\-.]?$")
_DOTTED_NAME = re.compile(rb"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+|[a-z_]+")
_KEYWORDS: list[tuple[bytes, bool]] = [  # (keyword, needs a qualifier just before it)
    (b"passw", False), (b"pwd", False), (b"secret", False), (b"token", False), (b"key", True),
]
_KEYWORD_PASSES = [(re.compile(re.escape(kw) + _ASSIGN_TAIL), kw, qualified) for kw, qualified in _KEYWORDS]
_BEARER_PASSES = [re.compile(kw + rb"[ \t]+(?P<v>[a-z0-9._~+/=\-]{16,})") for kw in (b"bearer", b"basic")]
# `quiet`'s keyword check: is any keyword in the lower-cased bytes? Each pattern starts with a letter that is
# rare in text (k, w, c, b) and looks back for the rest, so four `re` scans cover the seven keywords (~2x
# cheaper than seven `in` tests). tests/unit/test_privacy_fast_paths.py checks they cover `_KEYWORDS`.
_ASSIGNMENT_WORDS = (re.compile(rb"k(?:(?<=tok)en|ey)"), re.compile(rb"w(?:(?<=passw)|(?<=pw)d)"),
                     re.compile(rb"cret(?<=secret)"))
_BEARER_WORDS = re.compile(rb"b(?:earer|asic)")


def _assigned_ok(m: "re.Match[bytes]", keyword: bytes) -> bool:
    value, quoted = m.group("v"), m.group("q") is not None
    if len(value) < 6 or _META_SUFFIX.search(m.group("sfx")) or b"://" in value:
        return False
    v = value.decode("utf-8", "replace")
    if is_placeholder(v) or v[0] in "$%{<[(&*" or v.endswith(("(", ")")):
        return False
    if not quoted and _DOTTED_NAME.fullmatch(value):
        return False  # code: `token = self.token`, `password = request.form` (lower-cased bytes)
    if v.isdigit():
        return keyword in (b"passw", b"pwd")  # a numeric password or PIN; `tokens: 150000` is a count
    if _NUMERIC_LIKE.fullmatch(value) or (v.isalpha() and not quoted):
        return False
    return True


class SecretDetector:
    def __init__(self, enabled: Callable[[str], bool]):
        rows = [r for r in _PREFIXED_ROWS if enabled(r[1])]
        self._prefixed = re.compile("|".join(f"(?P<{g}>{src})" for g, _, src in rows)) if rows else None
        self._rules = {g: rule for g, rule, _ in rows}
        self._sendgrid = enabled("secret.sendgrid_key")
        self._vault = enabled("secret.vault_token")
        self._azure = enabled("secret.azure_storage_key")
        self._telegram = enabled("secret.telegram_token")
        self._entropy = enabled("secret.high_entropy")
        self._jwt = enabled("secret.jwt")
        self._tokens = bool(rows or self._sendgrid or self._vault or self._azure or self._telegram
                            or self._entropy or self._jwt)
        self._literal = [(rx, rule) for rx, rule in ((_PRIVATE_KEY, "secret.private_key"),
                                                     (_PUTTY, "secret.private_key"),
                                                     (_URL_CRED, "secret.url_password"),
                                                     (_SLACK_HOOK, "secret.slack_webhook")) if enabled(rule)]
        self._assign = enabled("secret.password_assignment")
        self._bearer = enabled("secret.bearer_token")
        self._off = not (self._tokens or self._literal or self._assign or self._bearer)  # `secrets` disabled

    def quiet(self, text: Text) -> bool:
        """True when `hits` cannot find anything: what each pass cannot match without is missing (a run of
        15+ token characters, `@`, `-----BEGIN `, a keyword). A clean chat message ends here."""
        if text.exhaustive:
            return False
        if self._off:
            return True
        s = text.s
        if "@" in s or "-----BEGIN " in s or text.has_long_run:
            return False
        data = text.lower_bytes
        if "=" in s or ":" in s:  # every assignment operator has one
            for rx in _ASSIGNMENT_WORDS:
                if rx.search(data) is not None:
                    return False
        return _BEARER_WORDS.search(data) is None

    def hits(self, text: Text) -> Iterator[Hit]:
        s = text.s
        if self._tokens and text.has_long_run:
            yield from self._token_hits(s, text.tokens)
        for rx, rule in self._literal:
            if rx is _URL_CRED and not text.may_contain("@"):
                continue
            if (rx is _PUTTY or rx is _SLACK_HOOK) and not text.has_long_run:
                continue  # both contain a run of 15+ token characters ("PuTTY-User-Key-File-2", "com/services/T…")
            for m in rx.finditer(s):
                if rx is _URL_CRED:
                    if _url_password_ok(m.group(1)):
                        yield Hit(rule, m.start(1), m.end(1))
                elif rx is _PRIVATE_KEY:
                    end = _key_block_end(s, m.end())  # no END line (truncated output): cannot be masked whole
                    yield Hit(rule, m.start(), end, redactable=end > m.end())
                else:
                    yield Hit(rule, m.start(), m.end())
        if self._assign or self._bearer:
            yield from self._keyword_hits(text)

    def _token_hits(self, s: str, tokens: list[tuple[int, str]]) -> Iterator[Hit]:
        # The hot loop of detection (thousands of tokens per 100 KB): cheap tests first, calls only for
        # the few tokens that could be something.
        prefixed, prefixes, entropy, jwt, slash = self._prefixed, _PREFIXES, self._entropy, self._jwt, _SLASH_PREFIX
        for start, tok in tokens:
            n = len(tok)
            if prefixed is not None and (tok.startswith(prefixes) or ("/" in tok and slash.search(tok))):
                hit = self._prefixed_hit(start, tok)
                if hit is not None:
                    yield hit
                    continue
            if jwt and tok.startswith("eyJ"):
                jm = _JWT.match(s, start)
                if jm is not None and _jwt_ok(jm):
                    yield Hit("secret.jwt", start, jm.end())
                    continue
            if start:
                before = s[start - 1]
                if (before == "." and n >= 22) or (before == "=" and 80 <= n <= 90) or (before == ":" and n == 35):
                    hit = self._before_hit(s, tok, start, before)
                    if hit is not None:
                        yield hit
                        continue
            if entropy and n >= 20 and not UPPER.isdisjoint(tok) and high_entropy(tok, s, start):
                yield Hit("secret.high_entropy", start, start + n)

    def _prefixed_hit(self, start: int, tok: str) -> Hit | None:
        """A known key at the token's start or right after a `/` in it (`https://KEY@host`, `/keys/KEY`)."""
        assert self._prefixed is not None
        offset = 0
        while True:
            if tok.startswith(_PREFIXES, offset):
                pm = self._prefixed.match(tok, offset)
                if pm is not None:
                    group = pm.lastgroup or ""
                    if group not in _RANDOM_BODY or has_digit_and_letter(pm.group(0)[3:]):
                        return Hit(self._rules[group], start + offset, start + pm.end())
            offset = tok.find("/", offset) + 1
            if not offset:
                return None

    def _before_hit(self, s: str, tok: str, start: int, before: str) -> Hit | None:
        """Tokens identified by the characters just before them: `SG.`, `hvs.`, `AccountKey=`, `<bot id>:`."""
        n = len(tok)
        if before == ".":
            marker = s[max(0, start - 4):start]
            if marker[-3:] == "SG." and n == 22 and self._sendgrid:
                tail = _SENDGRID_TAIL.match(s, start + n)
                if tail is not None:
                    return Hit("secret.sendgrid_key", start - 3, tail.end())
            elif marker in ("hvs.", "hvb.", "hvr.") and n >= 24 and self._vault:
                return Hit("secret.vault_token", start, start + n)
        elif before == "=":
            if 80 <= n <= 90 and self._azure and s[max(0, start - 11):start] == "AccountKey=":
                return Hit("secret.azure_storage_key", start, start + n)
        elif self._telegram and n == 35 and tok.startswith("AA") \
                and _TELEGRAM_ID.search(s, max(0, start - 11), start):
            return Hit("secret.telegram_token", start, start + n)
        return None

    def _keyword_hits(self, text: Text) -> Iterator[Hit]:
        data = text.lower_bytes
        if self._assign and (text.may_contain("=") or text.may_contain(":")):  # every operator has one
            for rx, keyword, qualified in _KEYWORD_PASSES:
                for m in rx.finditer(data):
                    if qualified and not _KEY_QUALIFIER.search(data, max(0, m.start() - 12), m.start()):
                        continue
                    if _assigned_ok(m, keyword):
                        yield Hit("secret.password_assignment", text.char_offset(m.start("v")),
                                  text.char_offset(m.end("v")))
        if self._bearer:
            for rx in _BEARER_PASSES:
                for m in rx.finditer(data):
                    value = m.group("v").decode("ascii")
                    if has_digit_and_letter(value) and not is_placeholder(value):
                        yield Hit("secret.bearer_token", text.char_offset(m.start("v")),
                                  text.char_offset(m.end("v")))
