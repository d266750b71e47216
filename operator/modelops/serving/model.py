"""The KServe model: loads the MLflow directory, compiles the fast path, validates and predicts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from modelops.serving import fastpath, loader, outputs
from modelops.serving.batching import MicroBatcher, TurnBatcher
from modelops.serving.config import ServeConfig
from modelops.serving.metrics import Recorder
from modelops.serving.outputs import Prediction
from modelops.serving.predictors import OnnxPredictor, Raw, SklearnPredictor, XGBoostPredictor
from modelops.serving.schema import Batch, InputError, Limits, ModelSpec, Tensor, decode_tensors, decode_v1

log = logging.getLogger("modelops.serving")


def model_name_for(config: ServeConfig) -> str:
    """--model-name, else modelName from modelops.json, else "model" (KServe's default)."""
    if config.model_name:
        return config.model_name
    path = Path(config.model_dir) / "modelops.json"
    try:
        name = json.loads(path.read_text()).get("modelName")
    except (OSError, ValueError):
        name = None
    return str(name) if name else "model"


class ModelopsModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, config: ServeConfig) -> None:
        super().__init__(name)
        self.config = config
        self.limits = Limits(max_rows=config.max_rows)
        self.draining = False
        self.spec: ModelSpec
        self.original: SklearnPredictor | XGBoostPredictor
        self.predictor: OnnxPredictor | SklearnPredictor | XGBoostPredictor
        self.fast: fastpath.FastPathResult | None = None
        self.recorder: Recorder
        self.headers: dict[str, str] = {}
        self.executor = ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="predict")
        self.batcher: MicroBatcher | None = None
        self.turn: TurnBatcher | None = None
        self._classes: np.ndarray[Any, Any] | None = None
        self.load_seconds = 0.0

    # ------------------------------------------------------------------------------------------ load

    def load(self) -> bool:
        t0 = time.perf_counter()
        loaded = loader.load(Path(self.config.model_dir), self.name, self.config.model_sha256,
                             self.config.allow_unverified_pickle)
        if self.config.model_version:
            loaded.spec = dataclasses.replace(loaded.spec, version=self.config.model_version)
        cls = SklearnPredictor if loaded.flavor == "sklearn" else XGBoostPredictor
        original = cls(loaded.model, loaded.spec)
        loaded.spec = fastpath.probe_features(loaded, original)
        original.spec = loaded.spec
        self.spec = loaded.spec
        self.original = original
        self.predictor = original
        if self.config.fast_path:
            sample = fastpath.parity_sample(loaded, rows=self.config.parity_rows)
            self.fast = fastpath.build(loaded, original, sample, self.config.tolerance,
                                       threads=self.config.threads_per_request)
            if self.fast.predictor is not None:
                self.predictor = self.fast.predictor
        else:
            self.fast = fastpath.FastPathResult(None, "disabled by --no-fast-path")
        self._check_classes()
        backend = self.predictor.backend
        self.headers = {
            "x-model-name": self.name,
            "x-model-version": self.spec.version,
            "x-model-run-id": self.spec.run_id,
            "x-modelops-backend": backend,
        }
        self.recorder = Recorder(self.name, self.spec.version)
        self.recorder.model_loaded(self.spec.run_id, self.spec.family, backend, self.predictor is not original)
        if self.config.batch_max_rows > 0:
            self.batcher = MicroBatcher(self.predict_batch, self.executor, self.config.batch_max_rows,
                                        self.config.batch_max_delay_ms / 1000.0)
        elif self.config.coalesce:
            self.turn = TurnBatcher(self.predict_batch, self.executor, self.config.coalesce_max_rows,
                                    self.config.inline_rows, inline=self.predictor is not original,
                                    observe=self.recorder.batch_rows.observe)
        self._warm_up(loaded)
        self.load_seconds = time.perf_counter() - t0
        log.info("model %s version %s (%s, %s) ready in %.1fs; backend %s%s", self.name, self.spec.version,
                 self.spec.family, self.spec.task, self.load_seconds, backend,
                 "" if self.predictor is not original else f" (fast path not used: {self.fast.reason})")
        self.ready = True
        return True

    def _check_classes(self) -> None:
        if self.spec.task != "classification" or not self.spec.classes:
            return
        if len(self.spec.classes) < 2:
            raise ValueError(f"classification model with classes {self.spec.classes}")
        self._classes = outputs.class_array(self.spec.classes)

    def _warm_up(self, loaded: loader.LoadedModel) -> None:
        """Exercise every code path (both predictors, 1 and many rows) before reporting ready."""
        sample = fastpath.accepted_rows(self.original, fastpath.parity_sample(loaded, rows=64, seed=1))
        if sample.rows == 0:
            log.warning("warm-up skipped: the model rejects every synthetic row")
            return
        one = fastpath.take(sample, slice(0, 1))
        for _ in range(self.config.warmup_iterations):
            self.predict_batch(one)
        for _ in range(5):
            self.predict_batch(sample)
            self.original.predict(one)

    # ------------------------------------------------------------------------------------------ predict

    def _to_prediction(self, raw: Raw) -> Prediction:
        if raw.values is not None:
            return Prediction(values=raw.values)
        if raw.probabilities is not None:
            proba = raw.probabilities
            if self._classes is not None and proba.shape[1] != len(self._classes):
                raise RuntimeError(f"model returned {proba.shape[1]} probabilities for {len(self._classes)} classes")
            labels = outputs.labels_from_probabilities(proba, self._classes) if self._classes is not None \
                else np.argmax(proba, axis=1)
            return Prediction(labels=labels, probabilities=proba)
        return Prediction(labels=raw.labels)

    def predict_batch(self, batch: Batch) -> Prediction:
        """Synchronous predict of validated inputs; the original model is the safety net of the fast path."""
        predictor = self.predictor
        try:
            raw = predictor.predict(batch)
        except Exception as exc:
            if predictor is self.original:
                if isinstance(exc, ValueError | TypeError | KeyError):
                    # scikit-learn says ValueError for inputs it cannot handle (e.g. an unseen category)
                    raise InputError(f"the model rejected the input: {str(exc)[:300]}") from exc
                raise
            log.exception("fast path failed on a validated batch; answering with the original model")
            raw = self.original.predict(batch)
        return self._to_prediction(raw)

    async def infer_batch(self, batch: Batch) -> Prediction:
        if self.batcher is not None:
            return await self.batcher.submit(batch)
        if self.turn is not None:
            return await self.turn.submit(batch)
        if self.predictor is not self.original and batch.rows <= self.config.inline_rows:
            # ~100 µs of ONNX Runtime: cheaper inline than the thread hop it would take to offload it
            return self.predict_batch(batch)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.predict_batch, batch)

    # ------------------------------------------------------------------------------------------ kserve hooks

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        """The KServe dataplane entry (CloudEvents, and anything our fast HTTP layer hands over)."""
        try:
            if isinstance(payload, InferRequest):
                tensors = [_tensor_from_infer_input(i) for i in payload.inputs]
                batch = decode_tensors(tensors, self.spec, self.limits)
                requested = tuple(o.name for o in payload.request_outputs) if payload.request_outputs else None
                pred = await self.infer_batch(batch)
                return self.infer_response(pred, payload.id, requested)
            if isinstance(payload, dict):
                pred = await self.infer_batch(decode_v1(payload, self.spec, self.limits))
                return outputs.v1_body(pred)
            raise InputError("request body must be JSON", status=400)
        except InputError as exc:
            raise InvalidInput(exc.message) from exc

    def infer_response(self, pred: Prediction, request_id: str | None,
                       requested: tuple[str, ...] | None) -> InferResponse:
        outs = []
        for o in outputs.v2_outputs(pred, self.spec, requested):
            data = o["data"]
            if isinstance(data, np.ndarray):
                data = data.tolist()
            outs.append(InferOutput(name=o["name"], shape=o["shape"], datatype=o["datatype"], data=data))
        return InferResponse(response_id=request_id or "", model_name=self.name, infer_outputs=outs,
                             model_version=self.spec.version)

    def get_input_types(self) -> list[dict[str, Any]]:
        return outputs.metadata_inputs(self.spec)

    def get_output_types(self) -> list[dict[str, Any]]:
        return outputs.metadata_outputs(self.spec, self.predictor.has_proba)

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata plus what operators need to know about this replica."""
        fast = self.fast
        return {
            "name": self.name,
            "versions": [self.spec.version] if self.spec.version else [],
            "platform": f"modelops/{self.spec.family}/{self.predictor.backend}",
            "inputs": self.get_input_types(),
            "outputs": self.get_output_types(),
            "parameters": {
                "task": self.spec.task,
                "family": self.spec.family,
                "run_id": self.spec.run_id,
                "version": self.spec.version,
                "classes": list(self.spec.classes) if self.spec.classes else None,
                "backend": self.predictor.backend,
                "fast_path": self.predictor is not self.original,
                "fast_path_reason": fast.reason if fast else "",
                "parity_max_diff": fast.max_diff if fast else None,
                "parity_rows": fast.sample_rows if fast else 0,
                "max_rows": self.limits.max_rows,
                "max_body_bytes": self.config.max_body_bytes,
                "load_seconds": round(self.load_seconds, 3),
            },
        }

    def start_drain(self) -> None:
        """SIGTERM: readiness fails from now on; requests keep being answered until the listeners close."""
        self.draining = True
        self.recorder.draining()
        log.info("SIGTERM: draining (readiness now fails, in-flight requests complete)")

    def stop(self) -> None:
        self.ready = False


def _tensor_from_infer_input(inp: InferInput) -> Tensor:
    try:
        data = inp.data
        if not isinstance(data, list | np.ndarray):
            data = inp.as_numpy().reshape(-1)
        elif isinstance(data, np.ndarray):
            data = data.reshape(-1)
        shape = [int(d) for d in inp.shape]
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"input '{inp.name}': {str(exc)[:200]}", status=400, field=inp.name) from exc
    if any(isinstance(x, list) for x in data):
        flat: list[Any] = []
        stack = list(data)
        while stack:  # V2 JSON may nest data to the shape
            x = stack.pop(0)
            if isinstance(x, list):
                stack[:0] = x
            else:
                flat.append(x)
        data = flat
    if not (1 <= len(shape) <= 2):
        raise InputError(f"input '{inp.name}': shape must have 1 or 2 dimensions", field=inp.name)
    return Tensor(inp.name, inp.datatype.upper(), shape, data)
