"""Who is asking, and may they decide: TokenReview and SubjectAccessReview against the API server.

The user presents a Kubernetes bearer token (an `Authorization: Bearer` header, or the session cookie the
login form sets; an OIDC-fronted cluster accepts its ID tokens the same way). The console asks the API
server who that is (TokenReview) and, for each decision, whether that user may `approve` the object
(SubjectAccessReview on the custom verb). Answers of TokenReview are reused for a few seconds per token
(keyed by the token's sha256; a restart loses nothing but that cache).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from modelops.console.kube import GROUP, Kube, KubeError

COOKIE = "modelops_console_token"
#: the custom RBAC verb a decision needs (on modeldeployments / retrainschedules)
VERB = "approve"


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)
    token_sha: str = ""

    def review_user(self) -> dict[str, Any]:
        return {"username": self.username, "uid": self.uid, "groups": list(self.groups), "extra": self.extra}


class Authenticator:
    def __init__(self, kube: Kube, cache_seconds: float, csrf_key: bytes) -> None:
        self.kube = kube
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, User | None]] = {}
        self._sar_cache: dict[tuple[str, str, str, str], tuple[float, tuple[bool, str]]] = {}
        self._csrf_key = csrf_key

    async def user(self, token: str) -> User | None:
        if not token or len(token) > 16384:
            return None
        sha = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(sha)
        now = time.monotonic()
        if hit and now - hit[0] < self.cache_seconds:
            return hit[1]
        try:
            st = await self.kube.token_review(token)
        except KubeError:
            raise
        user = None
        if st.get("authenticated"):
            u = st.get("user") or {}
            user = User(str(u.get("username", "")), str(u.get("uid", "")), tuple(u.get("groups") or ()),
                        dict(u.get("extra") or {}), sha)
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[sha] = (now, user)
        return user

    async def may_decide(self, user: User, plural: str, namespace: str, name: str,
                         for_display: bool = False) -> tuple[bool, str]:
        """SubjectAccessReview of the verb `approve`. Decisions always ask the API server; pages that only
        show whether the buttons will work (for_display) reuse an answer for auth_cache_seconds."""
        key = (user.token_sha, plural, namespace, name)
        now = time.monotonic()
        if for_display:
            hit = self._sar_cache.get(key)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        answer = await self.kube.access_review(user.review_user(), {
            "group": GROUP, "resource": plural, "verb": VERB, "namespace": namespace, "name": name})
        if len(self._sar_cache) > 10000:
            self._sar_cache.clear()
        self._sar_cache[key] = (now, answer)
        return answer

    def csrf(self, user: User) -> str:
        """Form token tied to the session's bearer token (the cookie is SameSite=Strict as well)."""
        return hmac.new(self._csrf_key, user.token_sha.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, user: User, given: str) -> bool:
        return hmac.compare_digest(self.csrf(user), given or "")
