"""Kopf handlers of ModelDeployment."""

from __future__ import annotations

from typing import Any

import kopf

from modelops.api import GROUP, MODEL_DEPLOYMENT, MODEL_DEPLOYMENTS, VERSION
from modelops.decide.spec_checks import model_deployment_problems
from modelops.handlers.common import acknowledge


@kopf.on.resume(GROUP, VERSION, MODEL_DEPLOYMENTS)
@kopf.on.create(GROUP, VERSION, MODEL_DEPLOYMENTS)
@kopf.on.update(GROUP, VERSION, MODEL_DEPLOYMENTS, field="spec")
def modeldeployment_acknowledge(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch,
                                **_: Any) -> None:
    acknowledge(MODEL_DEPLOYMENT, spec, status, meta, patch, model_deployment_problems)
