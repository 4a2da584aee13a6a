"""A small labelled corpus of agent traffic: what must be found, and what must not.

Used by these tests (every positive found by the expected rule, every negative clean) and by
`tests/bench/bench_privacy.py --compare`, which scores detect-secrets and Presidio on the same samples
(docs/privacy-detectors.md). Key-shaped strings are assembled at run time from a seeded generator, so
this file holds no literal credential a scanner would (rightly) complain about.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid

import pytest

from app.privacy.detectors import Scanner

_rnd = random.Random(1234)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rand(n: int, alphabet: str = _ALNUM) -> str:
    """A random string over `alphabet` that uses each of its classes (digits, upper, lower) it has."""
    classes = [f for f in (str.isdigit, str.isupper, str.islower) if any(f(c) for c in alphabet)]
    while True:
        s = "".join(_rnd.choice(alphabet) for _ in range(n))
        if all(any(f(c) for c in s) for f in classes):
            return s


def key(prefix: str, n: int, alphabet: str = _ALNUM) -> str:
    return prefix + rand(n, alphabet)


def jwt() -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return enc({"alg": "HS256", "typ": "JWT"}) + "." + enc({"sub": "1234567890", "name": "Jo"}) + "." + rand(43)


AWS = "AK" + "IA" + rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
OPENAI = key("sk-" + "proj-", 48) + "_" + rand(20)
ANTHROPIC = key("sk-" + "ant-api03-", 93) + "-" + rand(6) + "AA"
GITHUB = key("gh" + "p_", 36)
STRIPE = key("sk_" + "live_", 24)
GOOGLE = key("AI" + "za", 35)
HF = key("h" + "f_", 34)
SLACK = "xo" + "xb-" + "2" * 11 + "-" + "3" * 12 + "-" + rand(24)
PRIVATE_KEY = ("-----BEGIN RSA " + "PRIVATE KEY-----\n" + "\n".join(rand(64, _ALNUM + "+/") for _ in range(4))
               + "\n-----END RSA PRIVATE KEY-----")
ENTROPY = rand(32, _ALNUM + "_-")
PNG = "data:image/png;base64," + base64.b64encode(random.Random(5).randbytes(600)).decode()
SHA1 = hashlib.sha1(b"x").hexdigest()
SHA256 = hashlib.sha256(b"x").hexdigest()
SRI = "sha512-" + base64.b64encode(hashlib.sha512(b"left-pad").digest()).decode()
GOSUM = "h1:" + base64.b64encode(hashlib.sha256(b"mod").digest()).decode()
UUID = str(uuid.UUID(int=random.Random(9).getrandbits(128)))

# (name, text, rule expected among the hits)
POSITIVES: list[tuple[str, str, str]] = [
    ("aws key in .env", f"AWS_ACCESS_KEY_ID={AWS}\nAWS_REGION=eu-west-1\n", "secret.aws_access_key"),
    ("openai key in shell export", f"export OPENAI_API_KEY={OPENAI}\n", "secret.openai_key"),
    ("anthropic key in python", f'client = Anthropic(api_key="{ANTHROPIC}")', "secret.anthropic_key"),
    ("github token in git remote", f"git remote set-url origin https://{GITHUB}@github.com/me/repo.git",
     "secret.github_token"),
    ("stripe key in diff", f"+STRIPE_SECRET = '{STRIPE}'\n-STRIPE_SECRET = os.environ['S']", "secret.stripe_key"),
    ("google key in json", json.dumps({"maps": {"key": GOOGLE}}), "secret.google_api_key"),
    ("hugging face token in log", f"2025-03-01 INFO login with token {HF} ok", "secret.huggingface_token"),
    ("slack bot token in yaml", f"slack:\n  bot_token: {SLACK}\n", "secret.slack_token"),
    ("private key in tool result", f"$ cat ~/.ssh/id_rsa\n{PRIVATE_KEY}\n", "secret.private_key"),
    ("jwt in curl", f"curl -H 'Authorization: Bearer {jwt()}' https://api.internal/v1/me", "secret.jwt"),
    ("password in postgres url", "DATABASE_URL=postgres://app:Wint3r-Is-C0ming@db.internal:5432/prod",
     "secret.url_password"),
    ("password in redis url", "redis://:s3cr3tP4ss@cache:6379/0", "secret.url_password"),
    ("password assignment in python", 'DB_PASSWORD = "Tr0ub4dor&3x"', "secret.password_assignment"),
    ("password in yaml", "database:\n  password: hunter2-is-weak\n", "secret.password_assignment"),
    ("client secret in json", '{"client_id": "abc", "client_secret": "9f8e7d6c5b4aZZ"}',
     "secret.password_assignment"),
    ("api key assignment, unknown provider", "MISTRAL_API_KEY=" + rand(32), "secret.password_assignment"),
    ("bearer token opaque", "Authorization: Bearer " + rand(40, _ALNUM + "._-"), "secret.bearer_token"),
    ("high-entropy string in config", f"webhook_signing = {ENTROPY}", "secret.high_entropy"),
    ("secret after json newline escape", json.dumps({"content": "line one\n" + AWS}), "secret.aws_access_key"),
    ("email in prose", "Please forward the report to maria.gonzalez@acme-corp.eu by Friday.", "pii.email"),
    ("email in git log", "commit " + SHA1 + "\nAuthor: Jo Bloggs <jo.bloggs@bigco.com>\n", "pii.email"),
    ("email in csv", "id,name,email\n1,Ann,ann.lee@mailbox.org\n", "pii.email"),
    ("phone international", "Call me on +44 20 7946 0958 after six.", "pii.phone"),
    ("phone german mobile", "Tel.: +49 151 23456789", "pii.phone"),
    ("phone north american", "Support line: (415) 555-0132", "pii.phone"),
    ("phone north american dashed", "cell 212-555-0187", "pii.phone"),
    ("visa spaced", "card: 4111 1111 1111 1111 exp 09/27", "pii.payment_card"),
    ("mastercard dashed", "charged 5555-5555-5555-4444 today", "pii.payment_card"),
    ("amex plain", "amex 378282246310005", "pii.payment_card"),
    ("card in json", json.dumps({"payment": {"number": "4012888888881881"}}), "pii.payment_card"),
    ("iban spaced", "Bitte überweisen an DE89 3704 0044 0532 0130 00, danke.", "pii.iban"),
    ("iban compact", "iban=GB82WEST12345698765432;", "pii.iban"),
    ("iban dutch", "rekening NL91ABNA0417164300", "pii.iban"),
    ("us ssn", "SSN: 219-09-9999", "pii.national_id.us_ssn"),
    ("german tax id", "Steuer-IdNr. 86095742719", "pii.national_id.de_tax_id"),
    ("spanish dni", "DNI 12345678Z", "pii.national_id.es_dni"),
    ("french nir", "NIR 1 85 05 78 006 084 91", "pii.national_id.fr_nir"),
]

# (name, text) that must produce no hit at all
NEGATIVES: list[tuple[str, str]] = [
    ("git sha in log", f"commit {SHA1}\nMerge: {SHA1[:7]} {SHA1[7:14]}\n"),
    ("git diff header", f"diff --git a/app.py b/app.py\nindex {SHA1[:7]}..{SHA1[9:16]} 100644\n"),
    ("sha256 digest", f"image: registry.local/app@sha256:{SHA256}"),
    ("pip hash", f"requests==2.31.0 --hash=sha256:{SHA256}"),
    ("npm integrity", json.dumps({"node_modules/left-pad": {"version": "1.3.0", "integrity": SRI}})),
    ("yarn lock integrity", f'left-pad@^1.3.0:\n  version "1.3.0"\n  integrity {SRI}\n'),
    ("go.sum", f"golang.org/x/text v0.14.0 {GOSUM}\n"),
    ("uuid", f"request_id={UUID} status=200"),
    ("uuid upper", f"GUID {UUID.upper()}"),
    ("base64 png data url", f'<img src="{PNG}" alt="chart">'),
    ("long identifier", "def test_high_entropy_detector_skips_lockfile_integrity_hashes():"),
    ("camel case class", "class AbstractSingletonProxyFactoryBean(ProxyFactoryBean):"),
    ("snake constant with digits", "MAX_RETRIES_FOR_HTTP_503_ERRORS_IN_2024 = 5"),
    ("path with digits", "open('/srv/app/releases/v2/build/output/bundle2024/main.js')"),
    ("url path", "GET https://api.example.com/v1/organizations/members/permissions/roles HTTP/1.1"),
    ("password variable in code", "password = request.form['password']\nif not check_password(password):"),
    ("password from env", 'DB_PASSWORD = os.environ["DB_PASSWORD"]'),
    ("password placeholder", "password: ${POSTGRES_PASSWORD}\napi_key: <your-api-key>\ntoken: ********"),
    ("password label", 'label="Password" placeholder="Enter your password"'),
    ("token type annotation", "def refresh(self, token: str, secret_key: bytes = b'') -> None:"),
    ("url without password", "postgres://app@db.internal:5432/prod"),
    ("url with placeholder password", "postgres://user:${DB_PASS}@localhost/db"),
    ("example email", "git config user.email you@example.com"),
    ("noreply email", "Co-authored-by: bot <41898282+github-actions[bot]@users.noreply.github.com>"),
    ("ssh remote", "git clone git@github.com:me/repo.git"),
    ("npm package at version", "npm install lodash@4.17.21 react@18.2.0"),
    ("retina asset", "background: url(icon@2x.png)"),
    ("python decorator", "@property\ndef name(self):"),
    ("timestamp ms", "ts=1700000000123 elapsed=1234567 ms"),
    ("iso dates", "2025-03-01T10:23:45.123Z 2025-03-02 2024-12-31"),
    ("ip addresses", "client=10.23.45.67 upstream=192.168.100.200:8080"),
    ("version numbers", "python 3.11.7, numpy 1.26.4, build 20240115.1"),
    ("card-like failing luhn", "order 4111 1111 1111 1112 shipped"),
    ("big integer", "x = 123456789012345678"),
    ("line numbers", "\n".join(f"{i:>6}\tvalue = compute({i})" for i in range(100, 110))),
    ("hex color and ids", "color: #ff8800; id=0x7fffffff; mask 0xFFFF0000"),
    ("iban-like product code", "SKU DE12 ABCD EFGH IJKL"),
    ("phone-like arithmetic", "total = x +1 234 + y"),
    ("date after plus in diff", "+2025-03-01 10:23:45 INFO started"),
    ("wrapped certificate body", "-----BEGIN CERTIFICATE-----\n" + "\n".join(
        base64.b64encode(random.Random(i).randbytes(48)).decode() for i in range(4)) + "\n-----END CERTIFICATE-----"),
    ("docker digest short", "sha256:" + SHA256[:12]),
    ("jwt-looking but not", "eyJustAnIdentifierName.eyJanotherOne.signatureLike"),
    ("token counts", '{"usage": {"input_tokens": 150000, "total_tokens": 1234567, "max_tokens": 8192}}'),
    ("token expiry", "auth_token_expires_at: 2025-03-01T10:00:00Z"),
    ("kubernetes secret reference", "env:\n  - secretKeyRef:\n      name: db\n    secretName: my-app-secret\n"),
    ("key path", "private_key_path: ~/.ssh/id_ed25519\napi_key_env: OPENAI_API_KEY"),
    ("secret store url", "secret_url: https://vault.internal/v1/kv/app"),
]


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner.build()


def rules_of(scanner: Scanner, text: str) -> set[str]:
    return {h.rule for h in scanner.text_hits(text)}


@pytest.mark.parametrize("name,text,rule", POSITIVES, ids=[p[0] for p in POSITIVES])
def test_positive_found(scanner: Scanner, name: str, text: str, rule: str) -> None:
    assert rule in rules_of(scanner, text)


@pytest.mark.parametrize("name,text", NEGATIVES, ids=[n[0] for n in NEGATIVES])
def test_negative_clean(scanner: Scanner, name: str, text: str) -> None:
    assert rules_of(scanner, text) == set()


def test_corpus_size() -> None:
    """The figures in docs/privacy-detectors.md are for this corpus: keep them in step."""
    assert (len(POSITIVES), len(NEGATIVES)) == (37, 47)
