"""A real local Kubernetes control plane built from the Go module proxy (see LOCAL_CLUSTER.md)."""
