"""Which drift exporter shard an InferenceService logs to (issue 19): pure, no I/O.

The exporter runs as N replicas of a StatefulSet; each owns the windows of the (namespace, model) pairs that
`modelops.formats.drift_url.shard_of` (rendezvous hashing, shared with the exporter) assigns to it and refuses
the others (421 misdirected). The operator's exporter URL names the shard with ``{shard}``, e.g.
``http://modelops-drift-exporter-{shard}.modelops-drift-exporter-shards.modelops.svc:8080/events``.

Resharding (the chart's ``driftExporter.shards``) N -> N+1 moves ~1/(N+1) of the models, all onto the new
shard; the others keep their windows. The documented refill of a moved model: every exporter re-reads the
shard count (its ConfigMap file, within the kubelet's sync period plus 5 s) and drops the windows it no longer
owns; the operator (restarted by the chart's config checksum) rewrites the moved InferenceServices' logger
URLs and KServe rolls their predictors; events sent to the old shard meanwhile are refused (421 misdirected,
counted, not re-sent by the agent). The new shard's window then fills from empty: drift reads "insufficient
data" until ``--min-rows`` rows arrived, and the window is whole after ``--window-rows`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelops.formats.drift_url import SHARD_PLACEHOLDER, shard_of


def exporter_url(template: str, shards: int, namespace: str, model: str) -> str:
    """The events URL of the shard that owns (namespace, model); `template` as is when it names no shard."""
    if SHARD_PLACEHOLDER not in template:
        if shards > 1:
            raise ValueError(f"{shards} drift exporter shards, but the exporter URL {template!r} has no "
                             f"{SHARD_PLACEHOLDER} placeholder")
        return template
    return template.replace(SHARD_PLACEHOLDER, str(shard_of(namespace, model, shards)))


def moved(keys: Iterable[tuple[str, str]], old: int, new: int) -> list[tuple[str, str]]:
    """The (namespace, model) pairs whose shard changes when the shard count goes from `old` to `new`."""
    return [k for k in keys if shard_of(*k, old) != shard_of(*k, new)]
