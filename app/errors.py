"""One exception hierarchy for everything a person or a client may be told.

Every error carries a short `title` and a `message` a person can act on. Front ends render them without
special cases: the HTTP server in the client's dialect (`status` and `code` decide the shape), the CLI as
"title: message", the tray as a notification. Messages never contain secrets, paths or stack traces.
"""

from __future__ import annotations

from typing import Any


class TiergateError(Exception):
    """Base class. `status` is the HTTP status a client sees; `code` a stable machine-readable name."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Tiergate error"

    def __init__(self, message: str, *, title: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


# ------------------------------------------------------------------------------------- configuration
class ConfigError(TiergateError):
    """The config file cannot be used. `path` and `line` locate the problem when known."""

    code = "config_error"
    title = "Config error"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path:
            where = f"{path}:{line}: " if line else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.reason = message


class SecretError(TiergateError):
    """A key reference cannot be resolved (missing env var, missing or locked keychain entry)."""

    code = "secret_unavailable"
    title = "API key unavailable"


# ------------------------------------------------------------------------------- client-facing (4xx)
class BadRequest(TiergateError):
    status = 400
    code = "invalid_request_error"
    title = "Bad request"


class Unauthorized(TiergateError):
    status = 401
    code = "authentication_error"
    title = "Not authorised"


class Forbidden(TiergateError):
    status = 403
    code = "permission_error"
    title = "Forbidden"


class UnknownModel(TiergateError):
    status = 404
    code = "model_not_found"
    title = "Unknown model"


class PayloadTooLarge(TiergateError):
    status = 413
    code = "request_too_large"
    title = "Request too large"


class PrivacyRefused(TiergateError):
    """A request that must stay local has no local deployment to go to."""

    status = 403
    code = "privacy_refused"
    title = "Kept on this machine"


class BudgetExceeded(TiergateError):
    status = 429
    code = "budget_exceeded"
    title = "Budget exceeded"


class RateLimited(TiergateError):
    status = 429
    code = "rate_limit_error"
    title = "Too many requests"


# ---------------------------------------------------------------------------------------- upstreams
class UpstreamError(TiergateError):
    """Something went wrong talking to one deployment. `retryable` drives the router's retries and
    fallbacks; subclasses fix it by type, never by parsing strings."""

    status = 502
    code = "upstream_error"
    title = "Upstream error"
    retryable = True

    def __init__(self, message: str, *, deployment: str | None = None, upstream_status: int | None = None,
                 body: Any = None):
        super().__init__(message)
        self.deployment = deployment
        self.upstream_status = upstream_status
        self.body = body  # the upstream's parsed error body, for 4xx pass-through


class UpstreamConnectError(UpstreamError):
    code = "upstream_unreachable"
    title = "Upstream unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    title = "Upstream timed out"


class UpstreamRateLimited(UpstreamError):
    status = 429
    code = "rate_limit_error"
    title = "Upstream rate limit"


class UpstreamServerError(UpstreamError):
    code = "upstream_server_error"
    title = "Upstream server error"


class UpstreamBadResponse(UpstreamError):
    """The upstream answered with something that is not its documented format."""

    code = "upstream_bad_response"
    title = "Upstream sent an invalid response"


class UpstreamClientError(UpstreamError):
    """A 4xx other than 429: the request itself is wrong for that upstream. Not retried; passed
    through to the client with the upstream's status and message."""

    code = "invalid_request_error"
    title = "Upstream rejected the request"
    retryable = False

    def __init__(self, message: str, **kw: Any):
        super().__init__(message, **kw)
        if self.upstream_status:
            self.status = self.upstream_status


class UpstreamUnavailable(UpstreamError):
    """The deployment cannot be used right now (no key, cooling down). Raised before any I/O."""

    status = 503
    code = "upstream_unavailable"
    title = "Upstream unavailable"


class AllDeploymentsFailed(TiergateError):
    """Every deployment of the tier and its fallbacks failed. `attempts` lists (deployment, error)."""

    status = 502
    code = "all_deployments_failed"
    title = "No upstream could answer"

    def __init__(self, message: str, *, attempts: list[tuple[str, str]]):
        super().__init__(message)
        self.attempts = attempts
        if attempts and all(a[1] in ("cooling down", "unavailable") or a[1].startswith("unavailable") for a in attempts):
            self.status = 503
