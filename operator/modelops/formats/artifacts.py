"""The model artifacts' digest: recorded by the trainer at registration, verified by the model server.

MLflow write access would otherwise be code execution in every predictor Pod (issue 16, H3): an sklearn
model is a pickle, and the model server unpickles whatever the registry points at. So the trainer records
`tree_digest` of the model directory as the version tag `modelops.dev/artifact-sha256`; the operator hands
it to the predictor (MODELOPS_MODEL_SHA256), and the model server recomputes it over what the storage
initializer downloaded and refuses to load anything else. Changing a file after registration, or pointing
the version somewhere else, changes the digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: MLflow model version tag holding the digest
TAG_ARTIFACT_SHA256 = "modelops.dev/artifact-sha256"
#: the predictor's environment variable the operator sets from the tag
ENV_MODEL_SHA256 = "MODELOPS_MODEL_SHA256"


#: written by MLflow's client into every model it downloads through a ``models:/`` URI (with the name and
#: version the caller asked by, or nulls for a logged model's ``models:/m-...``), so it is not part of the
#: stored artifacts: KServe's storage initializer, fetching the artifact location itself, never has it.
#: Only the one at the root is skipped; it is YAML that loading a model never reads.
MLFLOW_DOWNLOAD_META = "registered_model_meta"


def tree_digest(root: Path) -> str:
    """sha256 over every regular file under `root`: its relative path (POSIX) and the sha256 of its bytes.

    Symbolic links are refused: a link could point the loader outside the verified tree. The root's
    `MLFLOW_DOWNLOAD_META` is left out, so the digest is the same whichever way the artifacts were fetched.
    """
    root = Path(root)
    outer = hashlib.sha256()
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix()):
        if path.is_symlink():
            raise ValueError(f"{path}: symbolic links are not allowed in model artifacts")
        if not path.is_file() or path.relative_to(root).as_posix() == MLFLOW_DOWNLOAD_META:
            continue
        inner = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(path.relative_to(root).as_posix().encode() + b"\0" + inner.hexdigest().encode() + b"\n")
    return outer.hexdigest()
