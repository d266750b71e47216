from tests.fixtures.cluster import kube, kube_crds, namespace  # noqa: F401
from tests.fixtures.kserve_live import kserve_live  # noqa: F401
from tests.fixtures.operator import operator  # noqa: F401
