"""The champion-vs-challenger decision (pure): does the new version beat the champion by the margin?"""

from __future__ import annotations

from dataclasses import dataclass

from modelops_pipelines.metrics import higher_is_better, improvement


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    verdict: str  # "passed" | "failed"
    reason: str


def decide(metric: str, new_value: float, champion_value: float | None, min_improvement: float,
           champion_version: str | None = None, champion_error: str | None = None) -> GateDecision:
    """Compare on the same held-out split.

    No champion: pass. Champion could not be scored on this split: fail closed (a person decides).
    Otherwise pass iff the direction-aware improvement is > 0 and >= min_improvement.
    """
    better = "higher" if higher_is_better(metric) else "lower"
    if champion_error is not None:
        return GateDecision(False, "failed", f"champion v{champion_version} could not be evaluated on the "
                                            f"held-out split ({champion_error}); not promoting automatically")
    if champion_value is None:
        return GateDecision(True, "passed", f"no champion yet; test {metric} {new_value:.4f}")
    delta = improvement(metric, new_value, champion_value)
    detail = (f"test {metric} {new_value:.4f} vs champion v{champion_version} {champion_value:.4f} "
              f"({better} is better, improvement {delta:+.4f}, required {min_improvement:.4f})")
    if delta > 0 and delta >= min_improvement:
        return GateDecision(True, "passed", f"beats the champion: {detail}")
    return GateDecision(False, "failed", f"does not beat the champion: {detail}")
