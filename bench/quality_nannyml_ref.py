"""NannyML's CBPE on the windows bench/quality_feedback.py wrote: the test-time reference, never a dependency.

Run by bench/quality_feedback.py with the interpreter of a throwaway virtual environment that has NannyML
(``uv venv /tmp/nml && uv pip install --python /tmp/nml/bin/python nannyml statsmodels``); usage telemetry
is disabled. Reads an .npz (reference scores/labels, windows of scores), prints JSON: per-window estimated
accuracy/AUC/F1 and the seconds NannyML took (fit + estimate).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def main(path: str) -> None:
    import nannyml as nml

    data = np.load(path)
    ref_score, ref_y = data["ref_score"], data["ref_y"]
    windows = data["windows"]  # windows x rows scores
    rows = windows.shape[1]
    reference = pd.DataFrame({"y_pred_proba": ref_score, "y_pred": (ref_score > 0.5).astype(int), "y_true": ref_y})
    analysis = pd.DataFrame({"y_pred_proba": windows.ravel(), "y_pred": (windows.ravel() > 0.5).astype(int)})
    t0 = time.perf_counter()
    est = nml.CBPE(y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", problem_type="classification_binary",
                   metrics=["roc_auc", "accuracy", "f1"], chunk_size=rows)
    est.fit(reference)
    result = est.estimate(analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - t0
    out = {m: result[(m, "value")].tolist() for m in ("roc_auc", "accuracy", "f1")}
    print(json.dumps({"nannyml": nml.__version__, "seconds": seconds, **out}))


if __name__ == "__main__":
    main(sys.argv[1])
