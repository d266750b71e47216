"""Open Inference Protocol V2 over gRPC: KServe's servicer with this model's infer, metadata and readiness.

Decoding goes straight from the protobuf to validated numpy columns (typed contents or raw_input_contents),
so a malformed tensor is INVALID_ARGUMENT naming the input, never INTERNAL. Message sizes are capped
explicitly with the same limit as the HTTP body.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from modelops.serving import outputs
from modelops.serving.schema import InputError, Tensor, decode_tensors, from_raw

log = logging.getLogger("modelops.serving")

# The largest response we send: probabilities of max_rows rows x classes, generous but bounded.
MAX_SEND_BYTES = 64 * 1024 * 1024

_CONTENTS = {
    "FP32": ("fp32_contents", np.float32), "FP64": ("fp64_contents", np.float64),
    "INT8": ("int_contents", np.int32), "INT16": ("int_contents", np.int32), "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64), "UINT8": ("uint_contents", np.uint32),
    "UINT16": ("uint_contents", np.uint32), "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64), "BOOL": ("bool_contents", np.bool_),
}


def tensors_from_grpc(request: pb.ModelInferRequest) -> list[Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InputError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs", status=400)
    out = []
    for i, inp in enumerate(request.inputs):
        name = inp.name
        dt = inp.datatype.upper()
        shape = [int(d) for d in inp.shape]
        if not 1 <= len(shape) <= 2 or any(d < 0 or d > 2**31 for d in shape):
            raise InputError(f"inputs[{name[:80]}]: shape must be 1 or 2 non-negative dims", field=name[:80])
        data: Any
        if raw:
            data = from_raw(raw[i], dt, f"inputs[{name[:80]}]")
        elif dt == "BYTES":
            data = list(inp.contents.bytes_contents)
        else:
            spec = _CONTENTS.get(dt)
            if spec is None:
                raise InputError(f"inputs[{name[:80]}]: unsupported datatype {dt[:20]}", field=name[:80])
            data = np.asarray(getattr(inp.contents, spec[0]), dtype=spec[1])
        out.append(Tensor(name, dt, shape, data))
    return out


def infer_response(model: Any, pred: outputs.Prediction, request_id: str,
                   requested: tuple[str, ...] | None) -> pb.ModelInferResponse:
    tensors = []
    for o in outputs.v2_outputs(pred, model.spec, requested):
        data = o["data"]
        dt = o["datatype"]
        if dt == "BYTES":
            contents = pb.InferTensorContents(bytes_contents=[str(x).encode() for x in data])
        elif dt == "BOOL":
            contents = pb.InferTensorContents(bool_contents=np.asarray(data, dtype=bool).tolist())
        elif dt == "INT64":
            contents = pb.InferTensorContents(int64_contents=np.asarray(data, dtype=np.int64).tolist())
        else:
            contents = pb.InferTensorContents(fp64_contents=np.asarray(data, dtype=np.float64).tolist())
        tensors.append(pb.ModelInferResponse.InferOutputTensor(name=o["name"], datatype=dt, shape=o["shape"],
                                                               contents=contents))
    return pb.ModelInferResponse(model_name=model.name, model_version=model.spec.version, id=request_id,
                                 outputs=tensors)


class ModelopsServicer(InferenceServicer):  # type: ignore[misc]
    def __init__(self, data_plane: Any, repository_extension: Any, model: Any) -> None:
        super().__init__(data_plane, repository_extension)
        self.model = model
        self._metadata = tuple(model.headers.items())

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: aio.ServicerContext) -> pb.ModelInferResponse:
        model = self.model
        if request.model_name != model.name:
            return await super().ModelInfer(request, context)  # KServe answers NOT_FOUND
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        rows = 0
        try:
            if not model.ready:
                raise InputError("model is not ready", status=503)
            batch = decode_tensors(tensors_from_grpc(request), model.spec, model.limits)
            rows = batch.rows
            requested = tuple(o.name for o in request.outputs) or None
            pred = await model.infer_batch(batch)
            response = infer_response(model, pred, request.id, requested)
            await context.send_initial_metadata(self._metadata)
            return response
        except InputError as exc:
            # set_code rather than abort: an abort is an exception the interceptor would re-map to INTERNAL
            code = grpc.StatusCode.UNAVAILABLE if exc.status == 503 else grpc.StatusCode.INVALID_ARGUMENT
            context.set_code(code)
            context.set_details(exc.message)
            return pb.ModelInferResponse()
        except Exception:
            log.exception("gRPC inference failed")
            code = grpc.StatusCode.INTERNAL
            context.set_code(code)
            context.set_details("internal server error")
            return pb.ModelInferResponse()
        finally:
            model.recorder.observe("grpc", code.name, time.perf_counter() - t0, rows if code == grpc.StatusCode.OK
                                   else 0)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: aio.ServicerContext) -> pb.ModelMetadataResponse:
        if request.name != self.model.name:
            return await super().ModelMetadata(request, context)
        md = self.model.metadata()
        return pb.ModelMetadataResponse(
            name=md["name"], versions=md["versions"], platform=md["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in md["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in md["outputs"]],
        )

    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.model.ready and not self.model.draining)

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: aio.ServicerContext) -> pb.ModelReadyResponse:
        if request.name != self.model.name:
            return await super().ModelReady(request, context)
        return pb.ModelReadyResponse(ready=self.model.ready and not self.model.draining)


class ModelopsGRPCServer(GRPCServer):  # type: ignore[misc]
    """KServe's gRPC server with our servicer, an explicit message cap and no per-call log line."""

    def __init__(self, port: int, data_plane: Any, repository_extension: Any, model: Any, max_receive_bytes: int,
                 grace_period: int) -> None:
        super().__init__(port, data_plane, repository_extension, kwargs={}, grace_period=grace_period)
        self.model = model
        self.max_receive_bytes = max_receive_bytes

    async def start(self, max_workers: int) -> None:
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_receive_message_length", self.max_receive_bytes),
                ("grpc.max_send_message_length", max(MAX_SEND_BYTES, self.max_receive_bytes)),
            ],
        )
        servicer = ModelopsServicer(self._data_plane, self._model_repository_extension, self.model)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        log.info("gRPC on port %d (max message %d bytes)", self._port, self.max_receive_bytes)
        await self._server.start()
        await self._server.wait_for_termination()
