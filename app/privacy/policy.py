"""The one place that decides where a request may go: `PrivacyPolicy.decide`.

A request's level is `any` or `local`. Sources, in the order they are named in `rule`:
  the global switch (`privacy_switch`), the agent's policy (`agent_policy`), the request header
  `X-Tiergate-Privacy: local` (`header`), the body's `metadata.tiergate_privacy` (`metadata`), the detectors
  (`secret.*`, `pii.*`, `rule.<name>`), and, in `decide_async`, the optional local classifier.
Any source can raise the level; nothing lowers it. Anything that goes wrong while deciding makes the
request `local` (`detector_error`, `agent_policy_invalid`…): failing closed.

A `local` request may use local and trusted deployments only (`allowed`): the tier's own, else the tier
named in `privacy.local_equivalents`, else it is refused (`refusal`). With `action: redact`, a request
whose only findings are maskable spans stays `any` with `redact=True`: the caller masks it with
`app.privacy.redact.Redactor` before a cloud deployment and restores the answer.

Settings (`tiergate_settings.privacy`, every key optional):

    trusted_hosts: [mac-studio.local, 192.168.1.0/24]   # hosts whose deployments are `trusted`
    local_equivalents: {orchestrator: helper-local}    # tier -> tier to use for local requests
    action: keep_local            # or redact
    detectors: {secrets: true, high_entropy: true, email: true, phone: true, payment_card: true,
                iban: true, national_id: true}
    disabled_rules: [pii.national_id.de_tax_id]        # single rules off
    allowlist: [me@mycompany.com]                      # exact values that never count
    rules: [{name: medical, keywords: [...], regexes: [...], paths: [~/Documents/Medical/**]}]
    scan_tool_specs: false        # tool names/descriptions/schemas come from the agent, not the user
    classifier: {enabled: false, tier: grunt, timeout: 2.0, max_chars: 6000}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from app.canonical import ChatRequest
from app.config.schema import Config, Deployment, Section
from app.errors import PrivacyRefused
from app.privacy.detectors import Finding, Scanner
from app.privacy.extract import collect_texts, request_texts
from app.privacy.location import Location, TrustedHosts, location_of
from app.privacy.rules import UserRule

if TYPE_CHECKING:
    from app.privacy.classifier import Classifier
    from app.privacy.redact import Redaction

Level = Literal["any", "local"]
HEADER = "x-tiergate-privacy"
METADATA_KEY = "tiergate_privacy"

# detectors.<key> -> the rule family it switches
DETECTOR_KEYS = {
    "secrets": "secrets", "high_entropy": "secret.high_entropy", "email": "pii.email", "phone": "pii.phone",
    "payment_card": "pii.payment_card", "iban": "pii.iban", "national_id": "pii.national_id",
}
_KEYS = {"trusted_hosts", "local_equivalents", "action", "detectors", "disabled_rules", "allowlist", "rules",
         "scan_tool_specs", "classifier"}
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(slots=True)
class ClassifierSettings:
    enabled: bool = False
    tier: str = "grunt"  # the local tier whose model classifies
    timeout: float = 2.0  # seconds; on timeout the request is treated as sensitive
    max_chars: int = 6000  # the most recent text sent to the classifier


@dataclass(slots=True)
class PrivacySettings:
    trusted_hosts: TrustedHosts = field(default_factory=TrustedHosts)
    local_equivalents: dict[str, str] = field(default_factory=dict)
    action: Literal["keep_local", "redact"] = "keep_local"
    disabled: frozenset[str] = frozenset()  # rule families / rules switched off
    allowlist: tuple[str, ...] = ()
    rules: list[UserRule] = field(default_factory=list)
    scan_tool_specs: bool = False
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)

    @classmethod
    def from_section(cls, section: Section) -> "PrivacySettings":
        """Validate `tiergate_settings.privacy`. Raises ConfigError with the file and line."""
        data = section.data
        for key in data:
            if key not in _KEYS:
                raise section.error(f"unknown key (known: {', '.join(sorted(_KEYS))})", key)
        out = cls()
        try:
            out.trusted_hosts = TrustedHosts.parse(_str_list(section, "trusted_hosts"))
        except ValueError as e:
            raise section.error(str(e), "trusted_hosts") from None
        equivalents = data.get("local_equivalents") or {}
        if not isinstance(equivalents, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                        for k, v in equivalents.items()):
            raise section.error("expected a mapping of tier -> local tier", "local_equivalents")
        out.local_equivalents = dict(equivalents)
        action = data.get("action", "keep_local")
        if action not in ("keep_local", "redact"):
            raise section.error('must be "keep_local" or "redact"', "action")
        out.action = action
        disabled = set(_str_list(section, "disabled_rules"))
        detectors = data.get("detectors") or {}
        if not isinstance(detectors, dict):
            raise section.error("expected a mapping of detector -> true/false", "detectors")
        for key, on in detectors.items():
            if key not in DETECTOR_KEYS:
                raise section.error(f"unknown detector (known: {', '.join(DETECTOR_KEYS)})", "detectors", key)
            if not isinstance(on, bool):
                raise section.error("expected true or false", "detectors", key)
            if not on:
                disabled.add(DETECTOR_KEYS[key])
        out.disabled = frozenset(disabled)
        out.allowlist = tuple(_str_list(section, "allowlist"))
        out.rules = _rules(section)
        scan_specs = data.get("scan_tool_specs", False)
        if not isinstance(scan_specs, bool):
            raise section.error("expected true or false", "scan_tool_specs")
        out.scan_tool_specs = scan_specs
        out.classifier = _classifier(section)
        return out


def _str_list(section: Section, key: str) -> list[str]:
    value = section.data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise section.error("expected a list of strings", key)
    return value


def _rules(section: Section) -> list[UserRule]:
    raw = section.data.get("rules") or []
    if not isinstance(raw, list):
        raise section.error("expected a list of rules", "rules")
    out: list[UserRule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise section.error("expected a mapping with name and keywords/regexes/paths", "rules", i)
        unknown = set(item) - {"name", "keywords", "regexes", "paths"}
        if unknown:
            raise section.error(f"unknown key {sorted(unknown)[0]!r} (known: name, keywords, regexes, paths)",
                                "rules", i, sorted(unknown)[0])
        name = item.get("name")
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            raise section.error("each rule needs a name (letters, digits, _ . -)", "rules", i, "name")
        if name in seen:
            raise section.error(f"duplicate rule name {name!r}", "rules", i, "name")
        seen.add(name)
        lists = {}
        for key in ("keywords", "regexes", "paths"):
            value = item.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise section.error("expected a list of non-empty strings", "rules", i, key)
            lists[key] = value
        if not any(lists.values()):
            raise section.error("a rule needs at least one keyword, regex or path", "rules", i)
        for j, rx in enumerate(lists["regexes"]):
            try:
                compiled = re.compile(rx)
            except re.error as e:
                raise section.error(f"invalid regex: {e}", "rules", i, "regexes", j) from None
            if compiled.match(""):
                raise section.error("this regex matches the empty string", "rules", i, "regexes", j)
        out.append(UserRule(name, lists["keywords"], lists["regexes"], lists["paths"]))
    return out


def _classifier(section: Section) -> ClassifierSettings:
    raw = section.data.get("classifier") or {}
    if not isinstance(raw, dict):
        raise section.error("expected a mapping", "classifier")
    out = ClassifierSettings()
    for key, value in raw.items():
        if key == "enabled" and isinstance(value, bool):
            out.enabled = value
        elif key == "tier" and isinstance(value, str) and value:
            out.tier = value
        elif key == "timeout" and isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            out.timeout = float(value)
        elif key == "max_chars" and isinstance(value, int) and not isinstance(value, bool) and value >= 200:
            out.max_chars = value
        else:
            raise section.error("classifier keys: enabled (bool), tier (name), timeout (seconds > 0), "
                                "max_chars (int >= 200)", "classifier", key)
    return out


# ---------------------------------------------------------------------------------------- decision
@dataclass(frozen=True, slots=True)
class PrivacyDecision:
    """Where a request may go, and why. `rule` names what raised the level (never matched text)."""

    level: Level
    rule: str = ""  # "privacy_switch" | "agent_policy" | "header" | "metadata" | "secret.…" | "pii.…" | …
    sources: tuple[str, ...] = ()  # every source that raised it: switch, agent, header, metadata, detector, classifier
    redact: bool = False  # level "any" only because the findings can be masked (action: redact)
    findings: tuple[Finding, ...] = ()  # filled when redacting or explaining, else at most the first one


ANY = PrivacyDecision("any")


class PrivacyPolicy:
    def __init__(self, settings: PrivacySettings | None = None, *, state: Any = None,
                 home: str | None = None):
        self.settings = settings or PrivacySettings()
        self.state = state  # optional: anything with `.enabled` (PrivacyState), read when global_on is None
        s = self.settings
        self.scanner = Scanner.build(disabled=s.disabled, rules=s.rules, allowlist=s.allowlist, home=home)
        self._locations: dict[tuple, Location] = {}

    @classmethod
    def from_config(cls, config: Config, **kw: Any) -> "PrivacyPolicy":
        """Settings from `tiergate_settings.privacy`, checked against the config's tiers: a local equivalent
        must be a tier with at least one local or trusted deployment (a config mistake fails loudly)."""
        section = config.section("privacy")
        settings = PrivacySettings.from_section(section)
        policy = cls(settings, **kw)
        tiers = config.tiers
        for tier, target in settings.local_equivalents.items():
            if target not in tiers:
                raise section.error(f"{target!r} is not a tier in model_list", "local_equivalents", tier)
            if not any(policy.location_of(d) != "cloud" for d in tiers[target]):
                raise section.error(f"tier {target!r} has no local or trusted deployment", "local_equivalents", tier)
        return policy

    # ------------------------------------------------------------------------------ THE function
    def decide(self, req: ChatRequest, *, agent_policy: str | None = None,
               headers: Mapping[str, str] | None = None, global_on: bool | None = None,
               explain: bool = False) -> PrivacyDecision:
        """The privacy level of `req`. `explain=True` runs every detector even when the level is already
        local and returns all findings (for `tiergate privacy test`)."""
        try:
            return self._decide(req, agent_policy, headers or {}, global_on, explain)
        except Exception:  # noqa: BLE001 - any failure while deciding keeps the request local
            return PrivacyDecision("local", "detector_error", ("detector",))

    def _decide(self, req: ChatRequest, agent_policy: str | None, headers: Mapping[str, str],
                global_on: bool | None, explain: bool) -> PrivacyDecision:
        raised: list[tuple[str, str]] = []  # (source, rule)
        if global_on is None:
            global_on = bool(self.state.enabled) if self.state is not None else False
        if global_on:
            raised.append(("switch", "privacy_switch"))
        if agent_policy:
            policy = agent_policy.strip().lower()
            if policy == "local":
                raised.append(("agent", "agent_policy"))
            elif policy not in ("any", "auto", "default"):
                raised.append(("agent", "agent_policy_invalid"))
        header = _header(headers, HEADER) if headers else None
        if header is not None and header.strip().lower() not in ("", "any"):
            raised.append(("header", "header"))
        meta = req.raw.get("metadata") if req.raw else None
        if isinstance(meta, dict):
            value = meta.get(METADATA_KEY)
            if value is not None and str(value).strip().lower() not in ("", "any"):
                raised.append(("metadata", "metadata"))
        if raised and not explain:
            return _local(raised)
        texts = collect_texts(req, include_tool_specs=self.settings.scan_tool_specs)
        if explain or self.settings.action == "redact":
            findings = self.scanner.findings(texts)
        else:
            first = self.scanner.first(texts)
            findings = [first] if first is not None else []
        if not findings:
            return _local(raised) if raised else ANY
        if not raised and self.settings.action == "redact" and all(_maskable(f) for f in findings):
            return PrivacyDecision("any", findings[0].rule, ("detector",), redact=True, findings=tuple(findings))
        keep = next((f for f in findings if not _maskable(f)), findings[0]) \
            if self.settings.action == "redact" else findings[0]
        raised.append(("detector", keep.rule))
        return _local(raised, tuple(findings))

    async def decide_async(self, req: ChatRequest, *, agent_policy: str | None = None,
                           headers: Mapping[str, str] | None = None, global_on: bool | None = None,
                           classifier: "Classifier | None" = None) -> PrivacyDecision:
        """`decide`, then, when `privacy.classifier.enabled` and nothing made the request local, ask the
        local classifier (time-boxed). A missing classifier, a timeout or an error keeps it local."""
        decision = self.decide(req, agent_policy=agent_policy, headers=headers, global_on=global_on)
        if decision.level == "local" or not self.settings.classifier.enabled:
            return decision
        if classifier is None:
            return PrivacyDecision("local", "classifier_unavailable", ("classifier",))
        try:
            texts = [t for _, t in request_texts(req, include_tool_specs=False)]
            verdict = await classifier.classify(texts)
        except Exception:  # noqa: BLE001
            return PrivacyDecision("local", "classifier_error", ("classifier",))
        if verdict.sensitive:
            return PrivacyDecision("local", verdict.rule, ("classifier",))
        return decision

    def redact(self, req: ChatRequest) -> "Redaction":
        """The masked copy of `req` for a cloud deployment when `decision.redact` (see app.privacy.redact).
        Raises RedactionFailed when it cannot be masked safely: the caller then treats the request as local."""
        from app.privacy.redact import Redactor

        return Redactor(self.scanner, include_tool_specs=self.settings.scan_tool_specs).redact(req)

    # --------------------------------------------------------------------------------- routing
    def location_of(self, deployment: Deployment) -> Location:
        key = (deployment.id, deployment.provider, deployment.model, deployment.api_base, deployment.location)
        loc = self._locations.get(key)
        if loc is None:
            try:
                loc = location_of(deployment, self.settings.trusted_hosts)
            except Exception:  # noqa: BLE001
                loc = "cloud"
            self._locations[key] = loc
        return loc

    def allowed(self, decision: PrivacyDecision, deployment: Deployment) -> bool:
        """May `deployment` serve a request with this decision? A `local` request: local/trusted only."""
        if decision.level == "any":
            return True
        return self.location_of(deployment) in ("local", "trusted")

    def local_equivalent(self, tier: str) -> str | None:
        """The tier to use for a local request when `tier` has no local deployment (`local_equivalents`)."""
        return self.settings.local_equivalents.get(tier)

    def refusal(self, decision: PrivacyDecision, tier: str, *, all_down: bool = False) -> PrivacyRefused:
        """The error for a local request nothing local can serve. Names the rule and the fix, never content."""
        why = f"This request must stay on this machine ({decision.rule})"
        if all_down:
            return PrivacyRefused(f"{why}, and every local deployment for the tier {tier!r} is down or cooling "
                                  "down. It was not sent to a cloud model. Start the local model (is Ollama "
                                  "running?) and retry.")
        return PrivacyRefused(f"{why}, and the tier {tier!r} has no local deployment. Add a local (Ollama) "
                              f"deployment to {tier!r}, or set tiergate_settings.privacy.local_equivalents."
                              f"{tier} to a local tier.")


def _maskable(f: Finding) -> bool:
    """Can redaction hide this finding? Not path rules, not signed reasoning, not image/document URLs."""
    return f.redactable and not f.place.endswith((".thinking", ".url"))


def _local(raised: list[tuple[str, str]], findings: tuple[Finding, ...] = ()) -> PrivacyDecision:
    sources = tuple(dict.fromkeys(src for src, _ in raised))
    return PrivacyDecision("local", raised[0][1], sources, findings=findings)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get("X-Tiergate-Privacy")
    if value is None and not hasattr(headers, "getall"):  # a plain dict: look the name up case-insensitively
        for key, v in headers.items():
            if key.lower() == name:
                return v
    return value


