import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    TEMPORARILY_UNAVAILABLE,
)

from modelops_pipelines.registry import is_transient, retry

pytestmark = pytest.mark.unit


def test_retry_recovers_from_transient_errors_with_bounded_backoff():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE)
        return "ok"

    assert retry(flaky, "op", attempts=5, base_delay=1.0, max_delay=1.5, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2 and all(0 < s <= 1.5 for s in sleeps)


def test_retry_gives_up_after_the_budget_and_never_retries_permanent_errors():
    sleeps = []
    with pytest.raises(ConnectionError):
        retry(lambda: (_ for _ in ()).throw(ConnectionError("down")), "op", attempts=3, sleep=sleeps.append)
    assert len(sleeps) == 2
    calls = []

    def bad():
        calls.append(1)
        raise MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(MlflowException):
        retry(bad, "op", sleep=sleeps.append)
    assert len(calls) == 1


def test_transient_classification():
    assert is_transient(MlflowException("x", error_code=INTERNAL_ERROR))
    assert not is_transient(MlflowException("x", error_code=INVALID_PARAMETER_VALUE))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError())
