"""The one decision: sources, precedence, failing closed, redaction, routing helpers, settings."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict

from app.canonical import ChatRequest, Message, TextPart, ThinkingPart, ToolSpec
from app.config import parse_config
from app.config.schema import Deployment, Section
from app.errors import ConfigError, PrivacyRefused
from app.privacy.classifier import Classifier
from app.privacy.policy import PrivacyDecision, PrivacyPolicy, PrivacySettings
from app.privacy.rules import UserRule
from tests.unit.test_privacy_corpus import AWS

POLICY = PrivacyPolicy()


def req(*texts: str, raw: dict | None = None, **kw) -> ChatRequest:
    return ChatRequest(model="coder", messages=[Message("user", [TextPart(t)]) for t in texts], raw=raw or {}, **kw)


def dep(api_base: str, **kw) -> Deployment:
    return Deployment(id=kw.pop("id", api_base), tier=kw.pop("tier", "t"), provider=kw.pop("provider", "openai"),
                      model=kw.pop("model", "m"), api_base=api_base, **kw)


CLOUD, LOCAL = dep("https://api.openai.com/v1"), dep("http://127.0.0.1:11434", provider="ollama")


# ------------------------------------------------------------------------------------------ sources
def test_clean_request_may_go_anywhere() -> None:
    assert POLICY.decide(req("refactor parse_config please"), agent_policy=None, headers={}) == PrivacyDecision("any")


@pytest.mark.parametrize("kw,rule,source", [
    ({"global_on": True}, "privacy_switch", "switch"),
    ({"agent_policy": "local"}, "agent_policy", "agent"),
    ({"agent_policy": "LOCAL "}, "agent_policy", "agent"),
    ({"agent_policy": "lcoal"}, "agent_policy_invalid", "agent"),  # a typo fails closed
    ({"headers": {"X-Tiergate-Privacy": "local"}}, "header", "header"),
    ({"headers": {"x-tiergate-privacy": "LOCAL"}}, "header", "header"),
    ({"headers": CIMultiDict({"X-TIERGATE-PRIVACY": "local"})}, "header", "header"),
    ({"headers": {"x-tiergate-privacy": "yes please"}}, "header", "header"),  # unknown values fail closed
])
def test_each_source_raises_the_level(kw: dict, rule: str, source: str) -> None:
    d = POLICY.decide(req("hello"), **kw)
    assert (d.level, d.rule, d.sources) == ("local", rule, (source,))


def test_metadata_field_raises_the_level() -> None:
    d = POLICY.decide(req("hello", raw={"metadata": {"tiergate_privacy": "local"}}))
    assert (d.level, d.rule) == ("local", "metadata")


def test_detector_names_the_rule_never_the_text() -> None:
    d = POLICY.decide(req("deploy", f"with {AWS}"))
    assert (d.level, d.rule, d.sources) == ("local", "secret.aws_access_key", ("detector",))
    assert AWS not in repr(d)


def test_nothing_lowers_the_level() -> None:
    d = POLICY.decide(req("hello"), global_on=True, agent_policy="any", headers={"x-tiergate-privacy": "any"},)
    assert (d.level, d.rule) == ("local", "privacy_switch")
    d = POLICY.decide(req("hello", raw={"metadata": {"tiergate_privacy": "any"}}), agent_policy="local")
    assert d.level == "local"


def test_all_sources_are_listed_in_precedence_order() -> None:
    d = POLICY.decide(req(f"key {AWS}"), global_on=True, agent_policy="local",
                      headers={"x-tiergate-privacy": "local"}, explain=True)
    assert (d.rule, d.sources) == ("privacy_switch", ("switch", "agent", "header", "detector"))
    assert [f.rule for f in d.findings] == ["secret.aws_access_key"]


def test_switch_read_from_attached_state_when_not_given() -> None:
    class State:
        enabled = True

    assert PrivacyPolicy(state=State()).decide(req("x")).rule == "privacy_switch"
    assert PrivacyPolicy(state=State()).decide(req("x"), global_on=False).level == "any"


def test_detection_error_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = PrivacyPolicy()

    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(policy.scanner, "first", boom)
    d = policy.decide(req("hello"))
    assert (d.level, d.rule) == ("local", "detector_error")


def test_malformed_request_fails_closed() -> None:
    broken = ChatRequest(model="x", messages=[Message("user", None)])  # type: ignore[arg-type]
    assert POLICY.decide(broken).rule == "detector_error"


def test_tool_specs_are_not_scanned_unless_asked() -> None:
    r = req("hi", tools=[ToolSpec("deploy", f"Deploys. Example key: {AWS}", {"type": "object"})])
    assert POLICY.decide(r).level == "any"
    assert PrivacyPolicy(PrivacySettings(scan_tool_specs=True)).decide(r).rule == "secret.aws_access_key"


# ---------------------------------------------------------------------------------------- redaction
REDACT = PrivacyPolicy(PrivacySettings(action="redact", rules=[UserRule("med", paths=["/srv/medical/**"])]))


def test_redact_action_keeps_maskable_requests_any() -> None:
    d = REDACT.decide(req(f"key {AWS}", "mail jane@acme.io"))
    assert (d.level, d.redact, d.rule) == ("any", True, "secret.aws_access_key")
    assert [f.rule for f in d.findings] == ["secret.aws_access_key", "pii.email"]


def test_redact_action_keeps_unmaskable_findings_local() -> None:
    d = REDACT.decide(req("mail jane@acme.io", "cat /srv/medical/scan.txt"))
    assert (d.level, d.redact, d.rule) == ("local", False, "rule.med")
    r = ChatRequest(model="x", messages=[Message("assistant", [ThinkingPart(f"the key is {AWS}", signature="s")])])
    assert REDACT.decide(r).level == "local"


def test_policy_redacts_with_its_own_settings() -> None:
    r = req(f"key {AWS}", tools=[ToolSpec("deploy", "mail ops@acme-corp.io", {"type": "object"})])
    red = PrivacyPolicy(PrivacySettings(action="redact", scan_tool_specs=True)).redact(r)
    assert red.request.messages[0].parts[0].text == "key «TG_SECRET_1»"
    assert red.request.tools[0].description == "mail «TG_EMAIL_1»"


def test_redact_never_overrides_switch_or_agent() -> None:
    d = REDACT.decide(req(f"key {AWS}"), agent_policy="local")
    assert (d.level, d.redact) == ("local", False)


# ------------------------------------------------------------------------------------------ routing
def test_allowed() -> None:
    local = PrivacyDecision("local", "x")
    trusted = dep("http://studio.lan:11434", provider="ollama")
    policy = PrivacyPolicy(PrivacySettings.from_section(Section({"trusted_hosts": ["studio.lan"]}, ("p",), None, {})))
    assert policy.allowed(local, LOCAL) and policy.allowed(local, trusted) and not policy.allowed(local, CLOUD)
    assert all(policy.allowed(PrivacyDecision("any"), d) for d in (LOCAL, trusted, CLOUD))
    assert not POLICY.allowed(local, trusted)  # not trusted without the setting


def test_allowed_fails_closed_when_location_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.privacy.policy as mod

    monkeypatch.setattr(mod, "location_of", lambda *_a: 1 / 0)
    assert not PrivacyPolicy().allowed(PrivacyDecision("local", "x"), LOCAL)


def test_refusal_names_rule_tier_and_fix() -> None:
    err = POLICY.refusal(PrivacyDecision("local", "secret.aws_access_key"), "orchestrator")
    assert isinstance(err, PrivacyRefused) and err.status == 403
    assert "secret.aws_access_key" in err.message and "local_equivalents.orchestrator" in err.message
    down = POLICY.refusal(PrivacyDecision("local", "header"), "coder", all_down=True)
    assert "down or cooling down" in down.message and "not sent to a cloud model" in down.message


# ------------------------------------------------------------------------------------------ settings
CONFIG = """model_list:
  - model_name: orchestrator
    litellm_params:
      model: anthropic/claude-sonnet-4-5
  - model_name: helper-local
    litellm_params:
      model: ollama_chat/gemma3:4b
  - model_name: helper-cloud
    litellm_params:
      model: ollama_chat/gpt-oss:120b-cloud
tiergate_settings:
  privacy:
{body}
"""


def config(body: str):
    return parse_config(CONFIG.format(body=body), path="config.yaml")


def test_full_settings_parse() -> None:
    policy = PrivacyPolicy.from_config(config("""    trusted_hosts: [studio.lan, 192.168.1.0/24]
    local_equivalents: {orchestrator: helper-local}
    action: redact
    detectors: {phone: false, national_id: false}
    disabled_rules: [secret.high_entropy]
    allowlist: [me@corp.io]
    rules:
      - name: medical
        keywords: [diagnosis]
        regexes: ['(?i)patient-\\d+']
        paths: [~/Documents/Medical/**]
    scan_tool_specs: true
    classifier: {enabled: true, tier: grunt, timeout: 1.5, max_chars: 4000}"""))
    s = policy.settings
    assert s.action == "redact" and s.scan_tool_specs and s.classifier.timeout == 1.5
    assert s.disabled == {"pii.phone", "pii.national_id", "secret.high_entropy"}
    assert policy.local_equivalent("orchestrator") == "helper-local" and policy.local_equivalent("coder") is None
    assert "studio.lan" in s.trusted_hosts and "192.168.1.9" in s.trusted_hosts
    assert policy.decide(req("call +44 20 7946 0958 about the DIAGNOSIS")).rule == "rule.medical"


@pytest.mark.parametrize("body,line,words", [
    ("    actions: redact", 13, "unknown key"),
    ("    action: mask", 13, 'must be "keep_local" or "redact"'),
    ("    detectors:\n      phone: no-thanks", 14, "expected true or false"),
    ("    detectors:\n      fax: false", 14, "unknown detector"),
    ("    trusted_hosts: [http://studio.lan]", 13, "not a host name"),
    ("    rules:\n      - keywords: [x]", 14, "needs a name"),
    ("    rules:\n      - name: a\n        regexes: ['(unclosed']", 15, "invalid regex"),
    ("    rules:\n      - name: a\n        regexes: ['x*']", 15, "matches the empty string"),
    ("    rules:\n      - name: a\n        keywords: [x]\n      - name: a\n        keywords: [y]", 16, "duplicate"),
    ("    rules:\n      - name: a", 14, "at least one keyword"),
    ("    classifier: {enabled: true, timeout: -1}", 13, "classifier keys"),
    ("    local_equivalents: {orchestrator: nowhere}", 13, "not a tier"),
    ("    local_equivalents: {orchestrator: helper-cloud}", 13, "no local or trusted deployment"),
])
def test_config_mistakes_are_errors_with_lines(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        PrivacyPolicy.from_config(config(body))
    assert e.value.line == line and words in e.value.message and e.value.path == "config.yaml"


def test_location_of_uses_trusted_hosts_and_caches() -> None:
    policy = PrivacyPolicy(PrivacySettings.from_section(Section({"trusted_hosts": ["studio.lan"]}, ("p",), None, {})))
    d = dep("http://studio.lan:11434", provider="ollama")
    assert policy.location_of(d) == "trusted" and policy.location_of(CLOUD) == "cloud"


# ----------------------------------------------------------------------------------------- classifier
CLASSIFY = PrivacyPolicy(PrivacySettings.from_section(Section({"classifier": {"enabled": True, "timeout": 0.05}},
                                                              ("p",), None, {})))


async def test_classifier_public_keeps_any() -> None:
    calls: list[str] = []

    async def run(prompt: str) -> str:
        calls.append(prompt)
        return "PUBLIC"

    d = await CLASSIFY.decide_async(req("how do I sort a list?"), classifier=Classifier(run))
    assert d.level == "any" and len(calls) == 1 and "how do I sort a list?" in calls[0]


@pytest.mark.parametrize("answer,rule", [("SENSITIVE", "classifier"), ("maybe?", "classifier_unclear"),
                                         ("", "classifier_unclear")])
async def test_classifier_verdicts_fail_closed(answer: str, rule: str) -> None:
    async def run(prompt: str) -> str:
        return answer

    d = await CLASSIFY.decide_async(req("my therapist said"), classifier=Classifier(run))
    assert (d.level, d.rule, d.sources) == ("local", rule, ("classifier",))


async def test_classifier_timeout_and_error_fail_closed() -> None:
    async def slow(prompt: str) -> str:
        await asyncio.sleep(5)
        return "PUBLIC"

    async def broken(prompt: str) -> str:
        raise ConnectionError("ollama down")

    assert (await CLASSIFY.decide_async(req("x"), classifier=Classifier(slow, timeout=0.01))).rule == \
        "classifier_timeout"
    assert (await CLASSIFY.decide_async(req("x"), classifier=Classifier(broken))).rule == "classifier_error"
    assert (await CLASSIFY.decide_async(req("x"), classifier=None)).rule == "classifier_unavailable"


async def test_classifier_not_asked_when_already_local_or_disabled() -> None:
    async def run(prompt: str) -> str:
        raise AssertionError("must not be called")

    assert (await CLASSIFY.decide_async(req(f"k {AWS}"), classifier=Classifier(run))).rule == "secret.aws_access_key"
    assert (await POLICY.decide_async(req("x"), classifier=Classifier(run))).level == "any"
