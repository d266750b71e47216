"""Competitor servers for bench/serving_latency.py, each the plain way people write it.

    python bench/serving_baselines.py fastapi MODEL_FILE PORT   # bare FastAPI + XGBoost
    python bench/serving_baselines.py kserve  MODEL_FILE PORT [GRPC_PORT]  # stock KServe, xgbserver's Model
    python bench/serving_baselines.py echo    -          PORT   # minimal uvicorn app: the HTTP stack's limit

FastAPI and KServe take KServe V1 `{"instances": [[...]]}` on /v1/models/model:predict and V2
`{"inputs": [...]}` on /v2/models/model/infer, and call XGBoost the way KServe's xgbserver does (DMatrix,
predict, one thread per request). The echo app answers every POST with a fixed small JSON body without
parsing it: no server on the same uvicorn stack can beat it.
"""


import sys
from typing import Any


def fastapi_app(model_file: str) -> Any:
    import numpy as np
    import orjson
    import xgboost as xgb
    from fastapi import FastAPI, Request
    from fastapi.responses import ORJSONResponse

    booster = xgb.Booster(model_file=model_file)
    booster.set_param({"nthread": 1})
    app = FastAPI()

    @app.post("/v1/models/model:predict")
    async def predict(request: Request) -> ORJSONResponse:
        body = orjson.loads(await request.body())
        x = np.asarray(body["instances"], dtype=np.float32)
        result = booster.predict(xgb.DMatrix(x, nthread=1), validate_features=False)
        return ORJSONResponse({"predictions": result.tolist()})

    @app.post("/v2/models/model/infer")
    async def infer(request: Request) -> ORJSONResponse:
        body = orjson.loads(await request.body())
        inp = body["inputs"][0]
        x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
        result = booster.predict(xgb.DMatrix(x, nthread=1), validate_features=False)
        return ORJSONResponse({"model_name": "model", "outputs": [
            {"name": "output-0", "datatype": "FP32", "shape": [len(result)], "data": result.tolist()}]})

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def kserve_main(model_file: str, port: int, grpc_port: int = 0) -> None:
    argv, sys.argv = sys.argv, sys.argv[:1]
    import kserve
    import xgboost as xgb
    from kserve.utils.utils import get_predict_input, get_predict_response

    sys.argv = argv

    class XGBoostModel(kserve.Model):  # type: ignore[misc]
        """kserve/python/xgbserver's model: Booster(model_file), then per request get_predict_input (V1 instances
        or V2 inputs as numpy), DMatrix, predict, get_predict_response (which gives a V2 response the request's
        id, or a fresh uuid when the request has none: InferResponse's id is required)."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self._booster: Any = None

        def load(self) -> bool:
            self._booster = xgb.Booster(params={"nthread": 1}, model_file=model_file)
            self.ready = True
            return self.ready

        def predict(self, payload: Any, headers: Any = None) -> Any:
            dmatrix = xgb.DMatrix(get_predict_input(payload), nthread=1)
            result = self._booster.predict(dmatrix, validate_features=False)
            return get_predict_response(payload, result, self.name)

    model = XGBoostModel("model")
    model.load()
    # stock settings otherwise: one uvicorn worker, gRPC on (KServe's default) when given a port
    kserve.ModelServer(http_port=port, grpc_port=grpc_port or 8081, enable_grpc=bool(grpc_port)).start([model])


def echo_app() -> Any:
    """The smallest ASGI app: read the body, answer a constant JSON document."""
    answer = b'{"predictions":[0.5]}'
    start = {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send(start)
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    kind, model_file, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(model_file), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    elif kind == "echo":
        import uvicorn

        uvicorn.run(echo_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    elif kind == "kserve":
        kserve_main(model_file, port, int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    else:
        raise SystemExit(f"unknown server kind {kind}")


if __name__ == "__main__":
    main()
