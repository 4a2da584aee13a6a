"""Privacy: where a request may go. One decision per request (`PrivacyPolicy.decide`), made before routing
from the global switch (`PrivacyState`), the agent's policy, the `X-Tiergate-Privacy` header, the body's
metadata and the detectors; `allowed` then keeps `local` requests on local and trusted deployments.
See docs/privacy-detectors.md for the detectors and their figures."""

from app.privacy.location import location_of
from app.privacy.policy import PrivacyDecision, PrivacyPolicy, PrivacySettings
from app.privacy.state import PrivacyState

__all__ = ["PrivacyDecision", "PrivacyPolicy", "PrivacySettings", "PrivacyState", "location_of"]
