"""Competitor servers for bench/serving_latency.py, each the plain way people write it.

    python bench/serving_baselines.py fastapi MODEL_FILE PORT   # bare FastAPI + XGBoost
    python bench/serving_baselines.py kserve  MODEL_FILE PORT   # stock KServe, a Model like KServe's xgbserver

Both take KServe V1 `{"instances": [[...]]}` on /v1/models/model:predict and call XGBoost the way KServe's
xgbserver does (DMatrix, predict, one thread per request).
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

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def kserve_main(model_file: str, port: int) -> None:
    argv, sys.argv = sys.argv, sys.argv[:1]
    import kserve
    import xgboost as xgb

    sys.argv = argv

    class XGBoostModel(kserve.Model):  # type: ignore[misc]
        """What kserve/python/xgbserver does: Booster(model_file), DMatrix(instances), predict, tolist."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self._booster: Any = None

        def load(self) -> bool:
            self._booster = xgb.Booster(params={"nthread": 1}, model_file=model_file)
            self.ready = True
            return self.ready

        def predict(self, payload: Any, headers: Any = None) -> Any:
            dmatrix = xgb.DMatrix(payload["instances"], nthread=1)
            result = self._booster.predict(dmatrix, validate_features=False)
            return {"predictions": result.tolist()}

    model = XGBoostModel("model")
    model.load()
    kserve.ModelServer(http_port=port, enable_grpc=False).start([model])


def main() -> None:
    kind, model_file, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "fastapi":
        import uvicorn

        uvicorn.run(fastapi_app(model_file), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    elif kind == "kserve":
        kserve_main(model_file, port)
    else:
        raise SystemExit(f"unknown server kind {kind}")


if __name__ == "__main__":
    main()
