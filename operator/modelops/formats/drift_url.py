"""The contract between the operator and the drift exporter: namespace-bound logger URLs (issue 16).

See `modelops.drift.auth` for the whole scheme. Here is what both sides compute: the operator to write an
InferenceService's logger URL, the exporter to check it.
"""

from __future__ import annotations

import hashlib
import hmac

#: the path prefix of namespace-bound event URLs
NAMESPACE_PATH = "/events/ns"
#: The predictor annotation that carries the served model version into KServe's payload logs: the operator
#: sets it on each predictor and lists it in `logger.metadataAnnotations`, so KServe's agent sends it in the
#: `ce-annotations` of every request and response event; the exporter reads the version from there (a request
#: event has no other trace of the version that answered it).
VERSION_ANNOTATION = "modelops.dev/model-version"


def namespace_token(secret: str, namespace: str) -> str:
    """The token of one namespace: HMAC-SHA256(secret, namespace), hex."""
    return hmac.new(secret.encode(), f"modelops-drift-events/{namespace}".encode(), hashlib.sha256).hexdigest()


def logger_url(base_url: str, secret: str, namespace: str) -> str:
    """The logger URL for an InferenceService in `namespace`, given the exporter's events URL.

    ``http://exporter:8080/events`` -> ``http://exporter:8080/events/ns/<namespace>/<token>``. Without a
    secret the URL is returned unchanged (an exporter started with --no-auth).
    """
    if not secret:
        return base_url
    root = base_url.rstrip("/")
    if root.endswith("/events"):
        root = root[: -len("/events")]
    return f"{root}{NAMESPACE_PATH}/{namespace}/{namespace_token(secret, namespace)}"


# --- sharding (issue 19) ----------------------------------------------------------------------------------

#: in the operator's drift exporter URL, replaced by the shard number (StatefulSet pod ordinal)
SHARD_PLACEHOLDER = "{shard}"


def shard_of(namespace: str, model: str, shards: int) -> int:
    """The exporter shard (0..shards-1) that owns the windows of `model` in `namespace`.

    Rendezvous (highest random weight) hashing: each shard scores the key, the highest score owns it. Going
    from N to N+1 shards moves exactly the keys the new shard now wins (~1/(N+1) of them) and no key between
    old shards; removing a shard moves only its own keys. The operator (which logger URL an InferenceService
    gets) and every exporter (which events it owns) compute the same answer from the same inputs.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if shards == 1:
        return 0
    key = f"{namespace}\x00{model}".encode()
    return max(range(shards), key=lambda i: hashlib.blake2b(key, digest_size=8, salt=i.to_bytes(16, "big")).digest())
