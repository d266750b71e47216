from tests.fixtures.cluster import kube, kube_crds, namespace  # noqa: F401
