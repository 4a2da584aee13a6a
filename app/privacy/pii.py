"""Personal data: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod 97), national ids.

Each family can be switched off (`pii.email`, `pii.phone`, `pii.payment_card`, `pii.iban`,
`pii.national_id`, or one id: `pii.national_id.us_ssn`). National ids: US SSN (dashed), French NIR,
German tax id, Spanish DNI — the ones with a format and a check digit precise enough for code and
logs; the UK NINO (no check digit, looks like many codes) is left out. The patterns favour precision on agent traffic
(code, diffs, logs) over recall: a phone number needs a `+country` prefix or the North-American
`(415) 555-0132` / `415-555-0132` shapes; digits alone are too often timestamps and ids. Every number
family is validated (Luhn, IBAN mod 97 and length per country, ids' check digits) before it counts.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

from app.privacy.patterns import Hit, Text

# ----------------------------------------------------------------------------------------- e-mail
# Documentation/test domains (RFC 2606/6761) and no-reply addresses are not anyone's personal data.
_NOT_PERSONAL_DOMAINS = ("example.com", "example.org", "example.net", "test", "invalid", "localhost",
                         "example", "users.noreply.github.com", "noreply.github.com")
_NOT_PERSONAL_LOCAL = frozenset({"git", "noreply", "no-reply", "donotreply", "do-not-reply"})
_AT = re.compile("@")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}"
                     r"[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w\-]|\.[A-Za-z])")
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


class EmailDetector:
    """E-mail addresses, anchored on "@" (rare in text), then the local part backwards and the domain
    forwards: ~10x faster than a forward regex that must try every word start."""

    rule = "pii.email"

    def hits(self, text: Text) -> Iterator[Hit]:
        domain_re, chars = _DOMAIN, _LOCAL_CHARS
        text = text.s
        for at in _AT.finditer(text):
            i = at.start()
            if i == 0 or text[i - 1] not in chars:
                continue
            start = i - 1
            limit = max(0, i - 65)
            while start > limit and text[start - 1] in chars:
                start -= 1
            if start == limit and start > 0 and text[start - 1] in chars:
                continue  # a longer run than an address allows
            if start > 0 and text[start - 1] == "\\" and text[start] in "nrt":
                start += 1  # JSON text: "…\\njane@…"
            while start < i and not text[start].isalnum():
                start += 1  # the local part starts with a letter or digit
            if start == i or text[start - 3:start] == "://":
                continue  # nothing left, or the user part of a URL (`https://user@host`)
            dm = domain_re.match(text, i + 1)
            if dm is None:
                continue
            if _email_ok(text[start:i], dm.group(0)):
                yield Hit(self.rule, start, dm.end())


def _email_ok(local: str, domain: str) -> bool:
    domain = domain.lower()
    if local.lower() in _NOT_PERSONAL_LOCAL:
        return False
    for d in _NOT_PERSONAL_DOMAINS:
        if domain == d or domain.endswith("." + d):
            return False
    tld = domain.rsplit(".", 1)[-1]
    # file names that look like addresses: "icon@2x.png", "pkg@1.2.3"
    return tld not in _FILE_EXTENSIONS and not local[0] in ".-" and ".." not in local


_FILE_EXTENSIONS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "ts", "py", "css", "json",
                              "map", "txt", "md", "html", "lock", "tgz", "zip"})

# --------------------------------------------------------------------------------------- phones
# ITU country calling codes (1-3 digits) that are assigned.
_CC = frozenset("""1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 60 61
62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98 211 212 213 216 218 220 221 222 223 224 225 226 227 228
229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 248 249 250 251 252 253 254 255
256 257 258 260 261 262 263 264 265 266 267 268 269 290 291 297 298 299 350 351 352 353 354 355 356 357
358 359 370 371 372 373 374 375 376 377 378 380 381 382 383 385 386 387 389 420 421 423 500 501 502 503
504 505 506 507 508 509 590 591 592 593 594 595 596 597 598 599 670 672 673 674 675 676 677 678 679 680
681 682 683 685 686 687 688 689 690 691 692 850 852 853 855 856 880 886 960 961 962 963 964 965 966 967
968 970 971 972 973 974 975 976 977 992 993 994 995 996 998""".split())
_DATE_LIKE = re.compile(r"\+?(?:19|20)[0-9]{2}[-/.](?:0[1-9]|1[0-2])")


def intl_phone_ok(s: str) -> bool:
    digits = "".join(ch for ch in s if ch in "0123456789")
    if not 9 <= len(digits) <= 15 or _DATE_LIKE.match(s):
        return False
    seps = {ch for ch in s[1:] if ch in " .-"}
    if len(seps) > 1 and not (seps == {" ", "-"} and "(" in s):
        return False  # mixed separators: a version or a timestamp, not a dialled number
    return digits[:1] in _CC or digits[:2] in _CC or digits[:3] in _CC


def nanp_ok(digits: str) -> bool:
    return len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789" and digits[1:3] != "11"


# ----------------------------------------------------------------------------------------- cards
def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)  # Visa
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # Amex
    if d.startswith("6011") or two == 65 or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19  # Diners
    if two == 62:
        return 16 <= n <= 19  # UnionPay
    if two in (50, 56, 57, 58, 63, 67):
        return 12 <= n <= 19  # Maestro
    return False


def card_ok(s: str) -> bool:
    """`s`: digits with at most one kind of separator (space or dash) in 4-digit-led groups."""
    seps = {ch for ch in s if not ch.isdigit()}
    if len(seps) > 1:
        return False
    digits = s.replace(" ", "").replace("-", "")
    if not 12 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    if seps and not _card_grouping_ok(s, seps.pop()):
        return False
    return _card_brand_ok(digits) and luhn_ok(digits)


def _card_grouping_ok(s: str, sep: str) -> bool:
    groups = [len(g) for g in s.split(sep)]
    return groups[0] == 4 and all(2 <= g <= 7 for g in groups) and len(groups) <= 5


# ----------------------------------------------------------------------------------------- IBANs
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(iban: str) -> bool:
    iban = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in moved))
    except ValueError:
        return False
    return number % 97 == 1


# ----------------------------------------------------------------------------------- national ids
def us_ssn_ok(s: str) -> bool:
    area, group, serial = s.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000" \
        and s not in ("123-45-6789", "078-05-1120")  # the documentation example and the famous void one


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_ok(digits: str, letter: str) -> bool:
    return len(digits) == 8 and digits.isdigit() and _DNI_LETTERS[int(digits) % 23] == letter


def fr_nir_ok(s: str) -> bool:
    """15 digits: sex, year, month, place, order, then the key 97 - (number mod 97)."""
    if len(s) != 15 or s[0] not in "12" or not ("01" <= s[3:5] <= "12" or "20" <= s[3:5] <= "42"):
        return False
    return 97 - int(s[:13]) % 97 == int(s[13:])


def de_tax_id_ok(s: str) -> bool:
    """German Steuer-IdNr: 11 digits, ISO 7064 MOD 11,10 check digit, first digit not 0, one digit of the
    first ten repeated two or three times."""
    if len(s) != 11 or s[0] == "0":
        return False
    product = 10
    for ch in s[:10]:
        total = (int(ch) + product) % 10 or 10
        product = (total * 2) % 11
    check = (11 - product) % 10
    counts = sorted((s[:10].count(c) for c in set(s[:10])), reverse=True)
    return check == int(s[10]) and counts[0] in (2, 3) and len(counts) in (8, 9)




# ------------------------------------------------------------------------------------------ passes
# A digit not glued to a word, number, version or path — or right after a JSON escape such as `\n`.
_NUMBER = re.compile(r"[0-9](?:(?<![A-Za-z0-9_.+/\\\-][0-9])|(?<=\\[nrt][0-9]))(?:[ \-]?[0-9]){7,18}(?![0-9])")
# The same pattern over `Text.digit_map` (every digit a `0`, other characters as they are): it starts with a
# literal, so `re` skips ahead ~3x faster, and matches the same spans (it sees the same classes).
_NUMBER_IN_DIGIT_MAP = re.compile(rb"0(?:(?<![A-Za-z0-9_.+/\\\-]0)|(?<=\\[nrt]0))(?:[ \-]?0){7,18}(?!0)")
_INTL_PHONE = re.compile(r"\+(?:(?<![A-Za-z0-9_+)\]]\+)|(?<=\\[nrt]\+))[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,4}\)?)"
                         r"(?:[ .\-]?[0-9]{2,5}){1,5}(?![0-9\-]|\.[0-9])")
_NANP_PAREN = re.compile(r"\((?<![A-Za-z0-9_]\()[2-9][0-9]{2}\) ?[2-9][0-9]{2}[\-. ][0-9]{4}(?![0-9])")
_IBAN_SPACED = re.compile(r"[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?(?![A-Za-z0-9])")
_WORD_AFTER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")


class PiiDetector:
    """Every enabled personal-data family, in four passes (`@`, `+`, `(`, digit runs) and the shared
    token list (compact IBANs). A spaced IBAN is found from its first all-digit group, looking back."""

    def __init__(self, enabled: Callable[[str], bool]):
        self.email = EmailDetector() if enabled("pii.email") else None
        self.phone = enabled("pii.phone")
        self.card = enabled("pii.payment_card")
        self.iban = enabled("pii.iban")
        self.ssn = enabled("pii.national_id.us_ssn")
        self.dni = enabled("pii.national_id.es_dni")
        self.nir = enabled("pii.national_id.fr_nir")
        self.tin = enabled("pii.national_id.de_tax_id")
        self._numbers = self.phone or self.card or self.ssn or self.dni or self.nir or self.tin or self.iban
        self._off = not (self.email or self._numbers)  # every personal-data family disabled

    def quiet(self, text: Text) -> bool:
        """True when `hits` cannot find anything: no `@` (e-mail), no token (compact IBAN) and fewer than 8
        digits (every other family has more: phones 9+, `(415) 555-0132` 10, cards 12+, ids 8+)."""
        if text.exhaustive:
            return False
        if self._off:
            return True
        return not ("@" in text.s or text.has_long_run or text.may_have_number)

    def hits(self, text: Text) -> Iterator[Hit]:
        if self.email is not None and text.may_contain("@"):
            yield from self.email.hits(text)
        s = text.s
        if self.phone:
            if text.may_contain("+"):
                for m in _INTL_PHONE.finditer(s):
                    if intl_phone_ok(m.group()):
                        yield Hit("pii.phone", m.start(), m.end())
            if text.may_contain("("):
                for m in _NANP_PAREN.finditer(s):
                    yield Hit("pii.phone", m.start(), m.end())
        if self._numbers:
            if text.exhaustive:
                numbers = _NUMBER.finditer(s)
            else:
                numbers = _NUMBER_IN_DIGIT_MAP.finditer(text.digit_map) if text.may_have_number else ()
            for m in numbers:
                start, end = m.span()
                hit = self._number(s, s[start:end], start, end)
                if hit is not None:
                    yield hit
        if self.iban and text.has_long_run:
            lengths = _IBAN_LENGTHS
            for start, tok in text.tokens:
                if len(tok) <= 34 and lengths.get(tok[:2]) == len(tok) and tok[2:4].isdigit() and iban_ok(tok):
                    yield Hit("pii.iban", start, start + len(tok))

    def _spaced_iban(self, s: str, start: int) -> Hit | None:
        """The IBAN whose first all-digit group starts at `start` ("DE89 3704 …", "GB82 WEST 1234 …")."""
        for back in (5, 10):
            j = start - back
            if j < 0 or not s[j + 2:j + 4].isdigit() or not s[j:j + 2].isupper():
                continue
            if j and s[j - 1].isalnum():
                continue
            m = _IBAN_SPACED.match(s, j)
            if m is not None and iban_ok(m.group()):
                return Hit("pii.iban", j, m.end())
        return None

    def _number(self, s: str, c: str, start: int, end: int) -> Hit | None:
        if self.iban and start >= 5 and s[start - 1] == " ":
            hit = self._spaced_iban(s, start)
            if hit is not None:
                return hit
        after = s[end:end + 1]
        digits = c.replace(" ", "").replace("-", "")
        if after in _WORD_AFTER:
            if self.dni and after.isupper() and len(c) == 8 and es_dni_ok(c, after) \
                    and s[end + 1:end + 2] not in _WORD_AFTER:
                return Hit("pii.national_id.es_dni", start, end + 1)
            return None
        if after == "." and s[end + 1:end + 2].isdigit():
            return None  # a decimal or a version
        n = len(digits)
        if n == 9 and self.ssn and len(c) == 11 and c[3] == "-" and c[6] == "-" and us_ssn_ok(c):
            return Hit("pii.national_id.us_ssn", start, end)
        if n == 10 and self.phone and len(c) == 12 and c[3] == "-" and c[7] == "-" and nanp_ok(digits):
            return Hit("pii.phone", start, end)
        if 12 <= n <= 19 and self.card and card_ok(c):
            return Hit("pii.payment_card", start, end)
        if n == 11 and self.tin and c == digits and de_tax_id_ok(digits):
            return Hit("pii.national_id.de_tax_id", start, end)
        if n == 15 and self.nir and "-" not in c and fr_nir_ok(digits):
            return Hit("pii.national_id.fr_nir", start, end)
        return None
