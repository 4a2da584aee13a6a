"""Detectors one by one: validators, switches, allowlist, user rules, offsets, what must never fire."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.privacy.detectors import Scanner
from app.privacy.patterns import Text, is_placeholder
from app.privacy.pii import card_ok, de_tax_id_ok, iban_ok, luhn_ok
from app.privacy.rules import UserRule, glob_to_regex
from tests.unit.test_privacy_corpus import AWS, OPENAI, rand

SCANNER = Scanner.build()


def rules(text: str, scanner: Scanner = SCANNER) -> list[str]:
    return [h.rule for h in scanner.text_hits(text)]


def spans(text: str, scanner: Scanner = SCANNER) -> list[tuple[str, str]]:
    return [(h.rule, text[h.start:h.end]) for h in scanner.text_hits(text)]


# ----------------------------------------------------------------------------------------- validators
def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005")
    assert not luhn_ok("4111111111111112")


def test_card_needs_brand_length_and_consistent_grouping() -> None:
    assert card_ok("4111 1111 1111 1111") and card_ok("4111-1111-1111-1111") and card_ok("4111111111111111")
    assert not card_ok("4111 1111-1111 1111")  # mixed separators
    assert not card_ok("41 1111 1111 1111 11")  # not 4-digit led
    assert not card_ok("9111111111111119")  # no such issuer
    assert not card_ok("0000000000000000")


def test_iban_mod97_and_country_length() -> None:
    assert iban_ok("DE89370400440532013000") and iban_ok("DE89 3704 0044 0532 0130 00")
    assert not iban_ok("DE88370400440532013000")  # check digits wrong
    assert not iban_ok("DE8937040044053201300")  # one short for Germany
    assert not iban_ok("XX89370400440532013000")


def test_german_tax_id_check_digit() -> None:
    assert de_tax_id_ok("86095742719")
    assert not de_tax_id_ok("86095742718") and not de_tax_id_ok("12345678901")


@pytest.mark.parametrize("value", ["${TOKEN}", "$TOKEN", "<your-key>", "********", "xxxx", "changeme", "None",
                                   "{{ secrets.KEY }}", "os.environ['X']", "process.env.KEY", "«TG_SECRET_1»",
                                   "«tg_secret_12»", "password123"])
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["Tr0ub4dor&3", "hunter2-is-weak", "s3cr3t!"])
def test_real_values_are_not_placeholders(value: str) -> None:
    assert not is_placeholder(value)


# ------------------------------------------------------------------------------------ what is found
def test_spans_cover_the_secret_only() -> None:
    text = f"url=postgres://app:Pa55word-x@db:5432/x key={AWS}"
    assert spans(text) == [("secret.aws_access_key", AWS), ("secret.url_password", "Pa55word-x")]


def test_password_assignment_masks_the_value_only() -> None:
    assert spans('DB_PASSWORD = "Tr0ub4dor&3x"') == [("secret.password_assignment", "Tr0ub4dor&3x")]


def test_key_in_url_path_and_userinfo() -> None:
    assert "secret.aws_access_key" in rules(f"https://s3.example.net/keys/{AWS}/object")
    assert rules(f"https://x:{OPENAI}@proxy.internal/") [0] in ("secret.openai_key", "secret.url_password")


def test_offsets_are_characters_with_non_ascii_text() -> None:
    text = "Überweisung für Jürgen — password: Gl4tteis-Über-alles!"
    (hit,) = [h for h in SCANNER.text_hits(text) if h.rule == "secret.password_assignment"]
    assert text[hit.start:hit.end] == "Gl4tteis-Über-alles!"


def test_json_escaped_text_is_scanned_like_plain_text() -> None:
    text = '{"log": "first line\\nAKIA' + AWS[4:] + '\\njane.doe@acme.io\\n4111 1111 1111 1111"}'
    assert set(rules(text)) == {"secret.aws_access_key", "pii.email", "pii.payment_card"}


# ------------------------------------------------------------------------------------ never a secret
@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789abcdef", min_size=7, max_size=128))
def test_hex_strings_are_never_flagged(hexstr: str) -> None:
    assert not [r for r in rules(f"commit {hexstr} sha={hexstr.upper()}") if r.startswith("secret.")]


@settings(max_examples=100, deadline=None)
@given(st.uuids())
def test_uuids_are_never_flagged(u: uuid.UUID) -> None:
    assert rules(f"id={u} ID={str(u).upper()} {u.hex}") == []


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_integrity_hashes_are_never_flagged(data: bytes) -> None:
    sri = base64.b64encode(hashlib.sha512(data).digest()).decode()
    s256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    text = (f'"integrity": "sha512-{sri}"\nintegrity sha384-{s256}\nmod v1.0.0 h1:{s256}\n'
            f"sha256:{hashlib.sha256(data).hexdigest()}\nnix sha256-{s256}")
    assert rules(text) == []


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=600, max_size=6000))
def test_base64_images_are_never_flagged(data: bytes) -> None:
    b64 = base64.b64encode(data).decode()
    assert [r for r in rules(f'<img src="data:image/png;base64,{b64}">') if r.startswith("secret.")] == []


def test_high_entropy_finds_random_tokens() -> None:
    token = rand(32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    assert rules(f"signing_value {token}") == ["secret.high_entropy"]


# ------------------------------------------------------------------------------- switches, allowlist
def test_families_and_single_rules_can_be_switched_off() -> None:
    text = f"mail jane@acme.io, key {AWS}, call +44 20 7946 0958"
    assert set(rules(text)) == {"pii.email", "secret.aws_access_key", "pii.phone"}
    assert set(rules(text, Scanner.build(disabled=["pii.email"]))) == {"secret.aws_access_key", "pii.phone"}
    assert set(rules(text, Scanner.build(disabled=["secrets"]))) == {"pii.email", "pii.phone"}
    assert set(rules(text, Scanner.build(disabled=["secret.aws_access_key", "pii"]))) == set()


def test_national_ids_switch_off_as_a_family() -> None:
    text = "SSN 219-09-9999, DNI 12345678Z"
    assert rules(text, Scanner.build(disabled=["pii.national_id"])) == []
    assert rules(text, Scanner.build(disabled=["pii.national_id.us_ssn"])) == ["pii.national_id.es_dni"]


def test_allowlist_drops_exact_values() -> None:
    scanner = Scanner.build(allowlist=["me@mycompany.com"])
    assert rules("from me@mycompany.com to you@othercorp.io", scanner) == ["pii.email"]


# --------------------------------------------------------------------------------------- user rules
def test_keywords_whole_words_case_insensitive() -> None:
    scanner = Scanner.build(disabled=["secrets", "pii"], rules=[UserRule("medical", keywords=["Diagnosis",
                                                                                               "blood test"])])
    assert rules("The DIAGNOSIS was clear; Blood Test tomorrow", scanner) == ["rule.medical", "rule.medical"]
    assert rules("prediagnosis and diagnoses and blood tests", scanner) == []


def test_keyword_offsets_with_non_ascii() -> None:
    scanner = Scanner.build(disabled=["secrets", "pii"], rules=[UserRule("p", keywords=["falcon"])])
    text = "Ärger über Project FALCON"
    (hit,) = scanner.text_hits(text)
    assert text[hit.start:hit.end] == "FALCON"


def test_regex_rules_keep_their_flags() -> None:
    scanner = Scanner.build(disabled=["secrets", "pii"], rules=[UserRule("case", regexes=[r"(?i)case-\d{4}"])])
    assert spans("see CASE-2024 and case-7", scanner) == [("rule.case", "CASE-2024")]


def test_path_globs_match_home_and_tilde_forms_and_are_not_maskable() -> None:
    scanner = Scanner.build(disabled=["secrets", "pii"], home="/Users/ann",
                            rules=[UserRule("medical", paths=["~/Documents/Medical/**"])])
    hits = list(scanner.text_hits('{"file_path": "/Users/ann/Documents/Medical/2024/scan.txt"}'))
    assert [(h.rule, h.redactable) for h in hits] == [("rule.medical", False)]
    assert rules("cat ~/Documents/Medical/notes.md", scanner) == ["rule.medical"]
    assert rules("ls /Users/ann/Documents/Medical", scanner) == ["rule.medical"]
    assert rules("/Users/ann/Documents/MedicalBills/x /Users/bob/Documents/Medical/x", scanner) == []


def test_glob_translation() -> None:
    import re

    rx = re.compile(glob_to_regex("/data/*/secret?.txt"))
    assert rx.search("/data/a/secret1.txt") and not rx.search("/data/a/b/secret1.txt")


# ------------------------------------------------------------------------------------ places, offsets
def test_findings_are_located_in_their_place() -> None:
    texts = [("system[0]", "be nice"), ("messages[0].content[0].text", f"x {AWS}"),
             ("messages[1].content[0].text", "mail jane@acme.io")]
    found = SCANNER.findings(texts)
    assert [(f.rule, f.place, f.start, f.end) for f in found] == [
        ("secret.aws_access_key", "messages[0].content[0].text", 2, 22),
        ("pii.email", "messages[1].content[0].text", 5, 17)]
    assert SCANNER.first(texts) == found[0]


def test_text_shares_derived_views() -> None:
    t = Text("AbC")
    assert t.lower_bytes == b"abc" and t.lower_bytes is t.lower_bytes


# ------------------------------------------------------------------------------------------ robustness
_NOISY = st.text(alphabet=st.sampled_from(list("aA0 9-_+/=.:@\\n\"'{}()\u00fc\u00ab\u00bbeyJSGhvskAKIA$%<>\t\n\ud800")),
                 max_size=300)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_NOISY, st.text(max_size=300)))
def test_any_text_scans_without_error_and_hits_stay_in_bounds(text: str) -> None:
    scanner = Scanner.build(rules=[UserRule("r", keywords=["ü", "x"], regexes=["a+"], paths=["~/d/**"])])
    for hit in scanner.text_hits(text):
        assert 0 <= hit.start < hit.end <= len(text)
