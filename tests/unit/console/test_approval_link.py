"""Signed approve/reject links: authentic tokens verify; forged, replayed, expired and mismatched ones never."""

from __future__ import annotations

import base64
import json
import random

import pytest

from modelops.desired import approval_link as L

pytestmark = pytest.mark.unit
SECRET = b"k" * 32
NOW = 1_800_000_000.0


def rs(state: str = "AwaitingApproval", version: str = "7", run: str = "r-1", ann: dict[str, str] | None = None):
    return {"metadata": {"namespace": "ns", "name": "churn", "annotations": ann or {}},
            "status": {"runs": [{"id": run, "state": state, "version": version}]}}


def md(state: str = "AwaitingApproval", version: str = "3", started: str = "2026-01-01T00:00:00Z",
       ann: dict[str, str] | None = None):
    return {"metadata": {"namespace": "ns", "name": "churn-md", "annotations": ann or {}},
            "status": {"stable": {"version": "2"}, "canary": {"version": version},
                       "rollout": {"state": state, "startedAt": started, "weight": 50}}}


def test_pending_approvals_of_both_kinds() -> None:
    assert L.pending_approvals("retrainschedules", rs()) == [L.Pending("retrainschedules", "ns", "churn", "7", "r-1")]
    assert L.pending_approvals("retrainschedules", rs(state="Approved")) == []
    assert L.pending_approvals("retrainschedules", rs(ann={L.ANN_APPROVE: "7"})) == []
    assert L.pending_approvals("modeldeployments", md()) == [
        L.Pending("modeldeployments", "ns", "churn-md", "3", "2026-01-01T00:00:00Z")]
    assert L.pending_approvals("modeldeployments", md(state="Progressing")) == []
    assert L.pending_approvals("modeldeployments", md(ann={L.ANN_REJECT: "3"})) == []
    with pytest.raises(ValueError, match="kind must be"):
        L.pending_approvals("pods", {})


def test_round_trip_and_match() -> None:
    p = L.pending_approvals("retrainschedules", rs())[0]
    tok = L.issue(SECRET, p, "approve", NOW, 3600)
    claims = L.verify(SECRET, tok, NOW + 10)
    assert (claims.kind, claims.name, claims.version, claims.decision, claims.binding) == (
        "retrainschedules", "churn", "7", "approve", "r-1")
    assert L.match(claims, rs()) == p


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        L.sign(b"short", L.Claims("retrainschedules", "a", "b", "1", "approve", "x", 1))


def _forge_payload(tok: str, **change: object) -> str:
    payload, sig = tok.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(change)
    new = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{new}.{sig}"


def test_thousand_bad_tokens_none_accepted() -> None:
    """1,000 forged, replayed, expired or mismatched tokens: 0 accepted (verify + match, as the console does)."""
    rnd = random.Random(18)
    p_rs = L.pending_approvals("retrainschedules", rs())[0]
    p_md = L.pending_approvals("modeldeployments", md())[0]
    good_rs = L.issue(SECRET, p_rs, "approve", NOW, 3600)
    good_md = L.issue(SECRET, p_md, "reject", NOW, 3600)
    cases: list[tuple[str, str, dict]] = []  # (token, category, object it is presented against)
    for i in range(1000):
        kind = i % 8
        if kind == 0:  # forged: random bytes in both parts
            tok = base64.urlsafe_b64encode(rnd.randbytes(60)).decode().rstrip("=") + "." + \
                base64.urlsafe_b64encode(rnd.randbytes(32)).decode().rstrip("=")
            cases.append((tok, "forged", rs()))
        elif kind == 1:  # forged: payload changed (another version), signature kept
            cases.append((_forge_payload(good_rs, version=str(rnd.randint(8, 99))), "forged", rs()))
        elif kind == 2:  # signed with another secret
            other = rnd.randbytes(32)
            cases.append((L.issue(other, p_rs, "approve", NOW, 3600), "forged", rs()))
        elif kind == 3:  # one character flipped anywhere
            pos = rnd.randrange(len(good_md))
            ch = good_md[pos]
            flipped = "A" if ch != "A" else "B"
            cases.append((good_md[:pos] + flipped + good_md[pos + 1:], "forged", md()))
        elif kind == 4:  # expired
            cases.append((L.issue(SECRET, p_rs, "approve", NOW - 7200 - i, 3600), "expired", rs()))
        elif kind == 5:  # replayed after the decision (annotation set / run left AwaitingApproval)
            obj = rs(ann={L.ANN_APPROVE: "7"}) if i % 16 == 5 else rs(state="Approved")
            cases.append((good_rs, "replayed", obj))
        elif kind == 6:  # replayed on a newer pending approval of the same version (another run / rollout)
            obj = rs(run=f"r-{i}") if i % 16 == 6 else md(started=f"2026-02-{1 + i % 27:02d}T00:00:00Z")
            cases.append((good_rs if i % 16 == 6 else good_md, "replayed", obj))
        else:  # mismatched: right signature, other object
            obj = rs() if i % 16 == 7 else md()
            obj["metadata"]["name"] = f"other-{i}"
            cases.append((good_rs if i % 16 == 7 else good_md, "mismatched", obj))
    accepted = []
    reasons: dict[str, int] = {}
    for tok, _cat, obj in cases:
        try:
            claims = L.verify(SECRET, tok, NOW + 60)
            L.match(claims, obj)
            accepted.append(tok)
        except L.LinkError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
    assert len(cases) == 1000
    assert accepted == []
    assert set(reasons) <= {"signature", "malformed", "expired", "stale", "mismatch"}
    assert reasons.get("expired") == 125 and reasons.get("stale", 0) >= 250 and reasons.get("signature", 0) >= 250
    # and the genuine tokens still verify (the check is not refusing everything)
    assert L.match(L.verify(SECRET, good_rs, NOW + 60), rs()).version == "7"
    assert L.match(L.verify(SECRET, good_md, NOW + 60), md()).version == "3"


@pytest.mark.parametrize("tok", ["", ".", "a.b.c", "x" * 3000, "é.é", "abc.d$f"])
def test_malformed(tok: str) -> None:
    with pytest.raises(L.LinkError) as err:
        L.verify(SECRET, tok, NOW)
    assert err.value.reason in ("malformed", "signature")
