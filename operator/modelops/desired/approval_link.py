"""HMAC-signed, expiring, single-use approve / reject links (pure: stdlib hmac, no I/O).

A link carries a token that binds *what* is decided to *the pending approval it was issued for*:

    kind (modeldeployments | retrainschedules), namespace, name, version, decision (approve | reject),
    binding (the identity of the pending approval: a RetrainSchedule run id, or the ModelDeployment
    rollout's startedAt), expiry (unix seconds)

signed with HMAC-SHA256 under a secret shared by whoever sends the links (the operator) and the console.
Single use needs no console state: a token verifies only while the object still shows *that* approval
pending (`pending_approvals`), and a decision ends it (the run leaves AwaitingApproval, the rollout is
promoted or rolled back, or the decision annotation already names the version). A replay after the
decision, a token for another version / object / decision, a token past its expiry and any bit flipped all
fail. A valid token is never enough by itself: the console still authenticates the user and authorises the
action (SubjectAccessReview) before applying it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.api import ANNOTATION_APPROVE, ANNOTATION_REJECT

Kind = Literal["modeldeployments", "retrainschedules"]
Decision = Literal["approve", "reject"]
KINDS: tuple[str, ...] = ("modeldeployments", "retrainschedules")
DECISIONS: tuple[str, ...] = ("approve", "reject")
#: annotations `modelops approve|reject` and the operator use (same keys on both kinds)
ANN_APPROVE = ANNOTATION_APPROVE
ANN_REJECT = ANNOTATION_REJECT
#: shortest secret accepted: 32 bytes, as for any HMAC-SHA256 key
MIN_SECRET_BYTES = 32
#: longest token accepted before any decoding (a valid one is ~250 characters)
MAX_TOKEN_CHARS = 2048


class LinkError(Exception):
    """Why a token was refused; `reason` is one word for metrics and tests, str() is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    kind: str
    namespace: str
    name: str
    version: str
    decision: str
    binding: str
    expires: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LinkError("malformed", f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.decision not in DECISIONS:
            raise LinkError("malformed", f"decision must be one of {DECISIONS}, not {self.decision!r}")
        for key in ("namespace", "name", "version", "binding"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise LinkError("malformed", f"{key} must be a non-empty string")
        if not isinstance(self.expires, int) or isinstance(self.expires, bool):
            raise LinkError("malformed", "expires must be an integer (unix seconds)")


@dataclass(frozen=True)
class Pending:
    """One approval an object currently waits for."""

    kind: str
    namespace: str
    name: str
    version: str
    binding: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise LinkError("malformed", "token is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the link secret must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, b"modelops-approval-link/v1\x00" + payload.encode("ascii"), hashlib.sha256).digest()


def sign(secret: bytes, claims: Claims) -> str:
    """The token for these claims: base64url(canonical JSON) "." base64url(HMAC-SHA256)."""
    _check_secret(secret)
    payload = _b64(json.dumps(asdict(claims), sort_keys=True, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(secret, payload))}"


def verify(secret: bytes, token: str, now: float) -> Claims:
    """The claims of an authentic, unexpired token; LinkError(reason) otherwise. The signature is checked
    (in constant time) before the payload is parsed, so a forged payload is never interpreted."""
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LinkError("malformed", "token must be two base64url parts joined by one '.'")
    payload, sig = token.split(".")
    given = _unb64(sig)
    _unb64(payload)
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise LinkError("signature", "the token's signature does not match (forged, altered or another secret)")
    try:
        data = json.loads(_unb64(payload))
        claims = Claims(**data)
    except (ValueError, TypeError) as exc:
        raise LinkError("malformed", f"token payload: {exc}") from None
    if now >= claims.expires:
        raise LinkError("expired", "the link has expired; open the approval view in the console instead")
    return claims


def pending_approvals(kind: str, obj: Mapping[str, Any]) -> list[Pending]:
    """What this object (a `kubectl get -o json` shape) waits for a person to decide right now.

    RetrainSchedule: each run in AwaitingApproval whose version no approve/reject annotation names yet
    (binding: the run id). ModelDeployment: the rollout in state AwaitingApproval, unless the approve or
    reject annotation already names its canary version (binding: the rollout's startedAt).
    """
    meta = obj.get("metadata") or {}
    ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    ann = meta.get("annotations") or {}
    decided = {str(ann.get(ANN_APPROVE, "")).strip(), str(ann.get(ANN_REJECT, "")).strip()} - {""}
    status = obj.get("status") or {}
    out: list[Pending] = []
    if kind == "retrainschedules":
        for run in status.get("runs") or []:
            version = str(run.get("version") or "")
            if run.get("state") == "AwaitingApproval" and version and version not in decided and run.get("id"):
                out.append(Pending(kind, ns, name, version, str(run["id"])))
    elif kind == "modeldeployments":
        ro = status.get("rollout") or {}
        version = str((status.get("canary") or {}).get("version") or "")
        if ro.get("state") == "AwaitingApproval" and version and version not in decided:
            out.append(Pending(kind, ns, name, version, str(ro.get("startedAt") or "rollout")))
    else:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return out


def match(claims: Claims, obj: Mapping[str, Any]) -> Pending:
    """The pending approval the (verified) claims were issued for, if the object still waits for it;
    LinkError("stale") when it was decided, superseded or never existed."""
    meta = obj.get("metadata") or {}
    if (claims.namespace, claims.name) != (meta.get("namespace"), meta.get("name")):
        raise LinkError("mismatch", "the token names another object")
    for p in pending_approvals(claims.kind, obj):
        if p.version == claims.version and p.binding == claims.binding:
            return p
    raise LinkError("stale", f"version {claims.version} of {claims.kind}/{claims.namespace}/{claims.name} no "
                    "longer awaits approval (already decided or superseded): the link was used or is outdated")


def issue(secret: bytes, pending: Pending, decision: str, now: float, ttl_seconds: float) -> str:
    """A token for one decision on one pending approval, valid for ttl_seconds."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    return sign(secret, Claims(pending.kind, pending.namespace, pending.name, pending.version, decision,
                               pending.binding, int(now + ttl_seconds)))
