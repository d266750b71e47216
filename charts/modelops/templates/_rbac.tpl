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
{{- end }}
