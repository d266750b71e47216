"""The controller runtime both kinds share: the layer between the kopf handlers and the adapters.

- `scheduler`: one per-object scheduler (user edits first, then child reports, then timers; one reconcile
  per object at a time; bounded concurrency; acts only while this replica leads);
- `budget`: the per-reconcile time budget every blocking call is bounded by;
- `cache`: the watch cache (objects and their children, fed by watches and our own writes);
- `status`: the one status writer (merge patch with a resourceVersion precondition);
- `outbox`: the one outbox executor (ordered, idempotent, persisted backoff; Events posted exactly once);
- `clients`: the adapters per target (MLflow per server and Secret with a credential TTL, Prometheus per
  URL), made on first use;
- `leader`: leader election on a coordination.k8s.io/v1 Lease;
- `runtime`: the process-wide wiring of the above, started and stopped by the handlers.
"""
