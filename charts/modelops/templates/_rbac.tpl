{{/*
The operator's rules on namespaced resources, listed verb by verb (no wildcards). Each line says which
part of modelops makes the call; tests/charts replays these calls under the ServiceAccount.
*/}}
{{- define "modelops.operatorRules" -}}
# The two modelops kinds: Kopf watches them and patches its annotations (progress, last-handled spec).
- apiGroups: ["modelops.dev"]
  resources: ["modeldeployments", "retrainschedules"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Their status subresource: conditions, observedGeneration, rollout progress, run history.
- apiGroups: ["modelops.dev"]
  resources: ["modeldeployments/status", "retrainschedules/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion on children need update on the owner's finalizers subresource.
- apiGroups: ["modelops.dev"]
  resources: ["modeldeployments/finalizers", "retrainschedules/finalizers"]
  verbs: ["update"]
# RetrainSchedule controller: one training Job per firing, history pruned by deletion.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Training Pods are read (never changed) to report why a run failed.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Training specs handed to Jobs; KServe's inferenceservice-config is read.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kubernetes Events for every rollout step and training run (core and events.k8s.io APIs).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# ModelDeployment controller: the KServe InferenceService it owns (server-side apply) and its status.
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices/status"]
  verbs: ["get"]
# ModelDeployment controller: the weighted HTTPRoute that splits a Standard-mode canary at the gateway
# (server-side apply; KServe's own route for the InferenceService is read to detect a KServe that splits).
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# ... and which predictor Services have ready endpoints (only those get a backendRef).
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# ... and, for a canary that logs, a Service of its own to the canary Pods' logger agent (KServe v0.20's canary
# Service skips it); KServe's canary Service is read to see whether it already targets the agent. The
# operator-writes admission policy limits these to ClusterIP Services labelled for modelops that select a
# KServe predictor's Pods.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}

{{/*
The console's rules, call by call; tests/charts replays them under the console's ServiceAccount.
*/}}
{{- define "modelops.consoleRules" -}}
# Who is asking: TokenReview of the user's bearer token.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# May they approve: SubjectAccessReview on the verb `approve` (the console never acts as the user).
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
# The pages read the modelops kinds; a decision is the approve / reject annotation `modelops approve|reject`
# sets (plus the decision record and the announced-once marker), written with a merge patch.
- apiGroups: ["modelops.dev"]
  resources: ["modeldeployments", "retrainschedules"]
  verbs: ["get", "list", "patch"]
# The model page shows the InferenceService's address and readiness.
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get"]
# Each decision is mirrored to a Kubernetes Event; the pages list an object's recent Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}

{{/* The approver: read the modelops kinds and hold the custom verb `approve` on them. */}}
{{- define "modelops.approverRules" -}}
- apiGroups: ["modelops.dev"]
  resources: ["modeldeployments", "retrainschedules"]
  verbs: ["get", "list", "watch", "approve"]
{{- end }}
