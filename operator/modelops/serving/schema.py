"""PURE: the model's input contract and the decoding of V1 / V2 payloads into validated columns.

No HTTP, gRPC, kserve or model libraries here: bytes or parsed JSON in, numpy columns (or an
`InputError` naming the field) out. Every way a client can get a payload wrong must end in an
`InputError` (400/413/422), never in an exception that a server would report as a 500.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Kind = Literal["number", "integer", "boolean", "string"]
Task = Literal["classification", "regression"]

# Longest accepted string value; categorical values are short, a megabyte "category" is abuse.
MAX_STRING_LENGTH = 1024
# NUL never occurs in a real category, so the fast path can use it to mark a missing string.
FORBIDDEN_STRING_CHAR = "\x00"

_NUMBER_DTYPES = {"float", "float16", "float32", "float64", "double", "number", "fp32", "fp64"}
_INTEGER_DTYPES = {"int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "long",
                   "integer"}
_BOOLEAN_DTYPES = {"bool", "boolean"}
_STRING_DTYPES = {"str", "string", "object", "category", "bytes", "binary"}

# V2 (Open Inference Protocol) tensor datatypes accepted for each feature kind.
_V2_NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_V2_NUMPY = {
    "BOOL": np.dtype("?"), "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"), "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}


class InputError(Exception):
    """A client mistake: `status` is the HTTP status to answer, `field` the offending input, if one."""

    def __init__(self, message: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


@dataclass(frozen=True)
class Feature:
    """One named model input. `nullable` and `categories` are learnt by probing the model at load."""

    name: str
    kind: Kind
    nullable: bool = True
    categories: tuple[str, ...] | None = None  # set only when unknown values are rejected by the model


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: Task
    features: tuple[Feature, ...]
    classes: tuple[Any, ...] | None = None
    version: str = ""
    run_id: str = ""
    family: str = ""
    target: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @cached_property  # per request on the hot path; a frozen dataclass, so computed once
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @cached_property
    def all_numeric(self) -> bool:
        return all(f.kind != "string" for f in self.features)

    @cached_property
    def numbers_only(self) -> bool:
        """Every feature a number or an integer: one numeric block can carry them all."""
        return all(f.kind in ("number", "integer") for f in self.features)

    @cached_property
    def integer_indices(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f.kind == "integer"]

    @cached_property
    def feature_index(self) -> dict[str, int]:
        return {f.name: j for j, f in enumerate(self.features)}

    def with_features(self, features: Iterable[Feature]) -> ModelSpec:
        return replace(self, features=tuple(features))


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_string_length: int = MAX_STRING_LENGTH


class BlockColumns(Mapping[str, npt.NDArray[Any]]):
    """The columns of a numeric [N, F] block as views made on demand (the hot path reads the block itself)."""

    __slots__ = ("_index", "_matrix")

    def __init__(self, matrix: npt.NDArray[np.float64], index: dict[str, int]) -> None:
        self._matrix = matrix
        self._index = index

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self._matrix[:, self._index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


@dataclass
class Batch:
    """Validated inputs: one array per feature (float64 for numbers, object holding str|None for strings)."""

    columns: Mapping[str, npt.NDArray[Any]]
    rows: int
    # [N, F] float64 in feature order when every feature is numeric and came as one block (columns are views)
    matrix: npt.NDArray[np.float64] | None = None


@dataclass
class V2Request:
    batch: Batch
    request_id: str | None
    outputs: tuple[str, ...] | None  # requested output names, None = all


def kind_of(dtype: str) -> Kind:
    d = str(dtype).strip().lower()
    if d in _NUMBER_DTYPES or d.startswith("float"):
        return "number"
    if d in _INTEGER_DTYPES or d.startswith(("int", "uint")):
        return "integer"
    if d in _BOOLEAN_DTYPES:
        return "boolean"
    if d in _STRING_DTYPES:
        return "string"
    raise ValueError(f"unsupported feature dtype {dtype!r}")


def features_from_contract(modelops: Mapping[str, Any] | None,
                           signature_inputs: Sequence[Mapping[str, Any]] | None) -> tuple[Feature, ...]:
    """Features from modelops.json (preferred, it is written by the trainer) or the MLflow signature."""
    if modelops and modelops.get("features"):
        return tuple(Feature(name=str(f["name"]), kind=kind_of(str(f.get("dtype", "float64"))))
                     for f in modelops["features"])
    if signature_inputs:
        out = []
        for i, col in enumerate(signature_inputs):
            if col.get("type") == "tensor":
                raise ValueError("tensor-based MLflow signatures are not supported; use named columns")
            out.append(Feature(name=str(col.get("name", f"f{i}")), kind=kind_of(str(col.get("type", "double")))))
        return tuple(out)
    raise ValueError("no input schema: modelops.json has no features and the MLmodel has no signature")


# ---------------------------------------------------------------------------------------------- columns

def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _numeric_column(feat: Feature, values: Sequence[Any] | npt.NDArray[Any], where: str) -> npt.NDArray[np.float64]:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "biuf":
            raise InputError(f"{where}: expected numbers, got {values.dtype}", field=feat.name)
        if values.dtype.kind == "b" and feat.kind != "boolean":
            raise InputError(f"{where}: expected numbers, got booleans", field=feat.name)
        out = values.astype(np.float64, copy=False).reshape(-1)
    else:
        types = set(map(type, values))
        if feat.kind == "boolean":
            allowed: set[type] = {bool, int}
        else:
            allowed = {int, float}
        if not types <= allowed | {type(None)}:
            bad = next(v for v in values if type(v) not in allowed and v is not None)
            raise InputError(f"{where}: expected a {feat.kind}, got {_type_name(bad)} {str(bad)[:40]!r}",
                             field=feat.name)
        if type(None) in types:
            if not feat.nullable:
                raise InputError(f"{where}: value is required (null given)", field=feat.name)
            out = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
            present = ~np.isnan(out)
        else:
            try:
                out = np.array(values, dtype=np.float64)
            except OverflowError:
                raise InputError(f"{where}: number out of range", field=feat.name) from None
            present = None
        vals = out if present is None else out[present]
        if not np.isfinite(vals).all():
            raise InputError(f"{where}: numbers must be finite", field=feat.name)
        if feat.kind == "integer" and not (vals == np.floor(vals)).all():
            raise InputError(f"{where}: expected an integer", field=feat.name)
        if feat.kind == "boolean" and not np.isin(vals, (0.0, 1.0)).all():
            raise InputError(f"{where}: expected a boolean", field=feat.name)
        return out
    # ndarray input (V2 binary / gRPC): NaN is the only missing marker there
    nan = np.isnan(out)
    if nan.any() and not feat.nullable:
        raise InputError(f"{where}: value is required (NaN given)", field=feat.name)
    if np.isinf(out).any():
        raise InputError(f"{where}: numbers must be finite", field=feat.name)
    if feat.kind == "integer":
        vals = out[~nan]
        if not (vals == np.floor(vals)).all():
            raise InputError(f"{where}: expected an integer", field=feat.name)
    return out


def _string_column(feat: Feature, values: Sequence[Any] | npt.NDArray[Any], limits: Limits,
                   where: str) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    cats = set(feat.categories) if feat.categories is not None else None
    for i, v in enumerate(values):
        if type(v) is bytes:
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{where}[{i}]: not valid UTF-8", field=feat.name) from None
        if type(v) is str:
            if len(v) > limits.max_string_length:
                raise InputError(f"{where}[{i}]: string longer than {limits.max_string_length}", field=feat.name)
            if FORBIDDEN_STRING_CHAR in v:
                raise InputError(f"{where}[{i}]: NUL character not allowed", field=feat.name)
            if cats is not None and v not in cats:
                allowed = ", ".join(sorted(cats)[:20])
                raise InputError(f"{where}[{i}]: unknown category {v[:40]!r} (known: {allowed})", field=feat.name)
            out[i] = v
        elif v is None:
            if not feat.nullable:
                raise InputError(f"{where}[{i}]: value is required (null given)", field=feat.name)
            out[i] = None
        else:
            raise InputError(f"{where}[{i}]: expected a string, got {_type_name(v)}", field=feat.name)
    return out


def column(feat: Feature, values: Sequence[Any] | npt.NDArray[Any], limits: Limits,
           where: str | None = None) -> npt.NDArray[Any]:
    where = where or feat.name
    if feat.kind == "string":
        return _string_column(feat, values, limits, where)
    return _numeric_column(feat, values, where)


def _check_rows(n: int, limits: Limits, what: str) -> None:
    if n == 0:
        raise InputError(f"{what}: no rows given", status=422, field=what)
    if n > limits.max_rows:
        raise InputError(f"{what}: {n} rows exceed the limit of {limits.max_rows}", status=422, field=what)


# ---------------------------------------------------------------------------------------------- V1

def numeric_matrix(spec: ModelSpec, rows: Sequence[Sequence[Any]]) -> npt.NDArray[np.float64] | None:
    """The hot path for all-numeric models: one vectorised check of the whole block.

    None when anything is off (a null, a string, a non-finite or non-integral value): the per-column path then
    finds the offending field and names it.
    """
    if not spec.numbers_only:
        return None
    types = set(map(type, itertools.chain.from_iterable(rows)))
    if not types <= {int, float}:
        return None
    try:
        mat = np.array(rows, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    return _checked_block(spec, mat)


def _checked_block(spec: ModelSpec, mat: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
    if mat.ndim != 2 or mat.shape[1] != len(spec.features) or not np.isfinite(mat).all():
        return None
    ints = spec.integer_indices
    if ints and not (mat[:, ints] == np.floor(mat[:, ints])).all():
        return None
    return mat


def decode_v1(body: Any, spec: ModelSpec, limits: Limits) -> Batch:
    """`{"instances": [...]}` (or `"inputs"`): rows as objects keyed by feature, or lists in feature order."""
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object with 'instances'", status=400)
    key = "instances" if "instances" in body else "inputs" if "inputs" in body else None
    if key is None:
        raise InputError("request body has no 'instances'", status=400, field="instances")
    unknown = set(body) - {key, "parameters", "id"}
    if unknown:
        raise InputError(f"unknown top-level keys: {sorted(unknown)}", status=400, field=sorted(unknown)[0])
    rows = body[key]
    if not isinstance(rows, list):
        raise InputError(f"'{key}' must be a list of rows", status=400, field=key)
    _check_rows(len(rows), limits, key)
    names = spec.feature_names
    nfeat = len(names)
    first = rows[0]
    if isinstance(first, dict):
        name_set = set(names)
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise InputError(f"{key}[{i}]: every row must be an object like the first", status=400, field=key)
            if len(row) != nfeat or not row.keys() <= name_set:
                extra = sorted(set(row) - name_set)
                if extra:
                    raise InputError(f"{key}[{i}]: unknown feature '{str(extra[0])[:80]}'", field=str(extra[0])[:80])
                missing = [n for n in names if n not in row]
                raise InputError(f"{key}[{i}]: missing feature '{missing[0]}'", field=missing[0])
        cols = {f.name: column(f, [r[f.name] for r in rows], limits) for f in spec.features}
    elif isinstance(first, list):
        for i, row in enumerate(rows):
            if type(row) is not list or len(row) != nfeat:
                raise InputError(f"{key}[{i}]: expected a list of {nfeat} values in the order {list(names)[:50]}",
                                 status=422, field=key)
        mat = numeric_matrix(spec, rows)
        if mat is not None:
            return Batch(BlockColumns(mat, spec.feature_index), len(rows), mat)
        transposed = list(zip(*rows, strict=True))
        cols = {f.name: column(f, transposed[j], limits) for j, f in enumerate(spec.features)}
    else:
        raise InputError(f"{key}[0]: a row must be an object or a list, got {_type_name(first)}",
                         status=400, field=key)
    return Batch(cols, len(rows))


# ---------------------------------------------------------------------------------------------- V2

@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: Sequence[Any] | npt.NDArray[Any]


def _flatten(data: Any, depth: int, where: str) -> list[Any]:
    """V2 JSON data may be flat or nested to the tensor's shape; return it flat (row-major)."""
    if not isinstance(data, list):
        raise InputError(f"{where}.data must be a list", status=400, field=where)
    if list not in set(map(type, data)):  # flat (the usual case): one pass in C
        return data
    if depth <= 1:
        raise InputError(f"{where}.data is nested deeper than its shape", status=422, field=where)
    out: list[Any] = []
    for x in data:
        if type(x) is not list:
            raise InputError(f"{where}.data mixes lists and scalars", status=422, field=where)
        out.extend(_flatten(x, depth - 1, where))
    return out


def _shape(raw: Any, where: str) -> list[int]:
    if (not isinstance(raw, list) or not raw or len(raw) > 2
            or not all(type(d) is int and 0 <= d <= 2**31 for d in raw)):
        raise InputError(f"{where}.shape must be a list of 1 or 2 non-negative integers", status=422, field=where)
    return raw


def parse_v2_json(body: Any) -> tuple[list[dict[str, Any]], str | None, tuple[str, ...] | None]:
    if not isinstance(body, dict):
        raise InputError("request body must be a JSON object with 'inputs'", status=400)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InputError("'inputs' must be a non-empty list of tensors", status=400, field="inputs")
    if len(inputs) > 4096:
        raise InputError("too many input tensors", status=422, field="inputs")
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InputError("'id' must be a string", status=400, field="id")
    outputs = body.get("outputs")
    requested: tuple[str, ...] | None = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise InputError("'outputs' must be a list of {\"name\": ...}", status=400, field="outputs")
        requested = tuple(o["name"] for o in outputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("datatype"), str):
            raise InputError(f"inputs[{i}] must have a string 'name' and 'datatype'", status=400, field="inputs")
    return inputs, rid, requested


def tensors_from_json(inputs: list[dict[str, Any]], binary: bytes | None = None) -> list[Tensor]:
    """JSON tensors, with the binary data extension when `binary` holds the bytes after the JSON header."""
    out = []
    offset = 0
    for t in inputs:
        name, dt = t["name"], t["datatype"].upper()
        where = f"inputs[{name[:80]}]"
        shape = _shape(t.get("shape"), where)
        params = t.get("parameters") or {}
        if not isinstance(params, dict):
            raise InputError(f"{where}.parameters must be an object", status=400, field=name)
        size = params.get("binary_data_size")
        if size is not None:
            if binary is None or type(size) is not int or size < 0 or offset + size > len(binary):
                raise InputError(f"{where}: binary_data_size does not match the request body", status=400,
                                 field=name)
            out.append(Tensor(name, dt, shape, from_raw(binary[offset:offset + size], dt, where)))
            offset += size
        else:
            if "data" not in t:
                raise InputError(f"{where} has no 'data'", status=400, field=name)
            out.append(Tensor(name, dt, shape, _flatten(t["data"], len(shape), where)))
    if binary is not None and offset != len(binary):
        raise InputError("binary data left over after the last input", status=400)
    return out


def from_raw(buf: bytes, datatype: str, where: str) -> npt.NDArray[Any] | list[bytes]:
    if datatype == "BYTES":
        items: list[bytes] = []
        i = 0
        while i < len(buf):
            if i + 4 > len(buf):
                raise InputError(f"{where}: truncated BYTES element", status=400)
            (n,) = struct.unpack_from("<I", buf, i)
            i += 4
            if i + n > len(buf):
                raise InputError(f"{where}: truncated BYTES element", status=400)
            items.append(bytes(buf[i:i + n]))
            i += n
        return items
    dt = _V2_NUMPY.get(datatype)
    if dt is None:
        raise InputError(f"{where}: unsupported datatype {datatype[:20]}", field=where)
    if len(buf) % dt.itemsize:
        raise InputError(f"{where}: {len(buf)} bytes is not a whole number of {datatype}", status=400)
    return np.frombuffer(buf, dtype=dt)


def decode_tensors(tensors: Sequence[Tensor], spec: ModelSpec, limits: Limits) -> Batch:
    """One tensor per feature (shape [N] or [N,1]), or one [N, F] tensor for an all-numeric model."""
    for t in tensors:
        n = 1
        for d in t.shape:
            n *= d
        if len(t.data) != n:
            raise InputError(f"inputs[{t.name[:80]}]: shape {t.shape} needs {n} values, got {len(t.data)}",
                             field=t.name[:80])
    names = spec.feature_names
    if len(tensors) == 1 and len(names) > 1 and tensors[0].name not in names:
        t = tensors[0]
        if not spec.all_numeric:
            raise InputError(f"inputs[{t.name[:80]}]: this model has string features, send one tensor per "
                             f"feature {list(names)[:50]}", field=t.name[:80])
        if len(t.shape) != 2 or t.shape[1] != len(names):
            raise InputError(f"inputs[{t.name[:80]}]: expected shape [N, {len(names)}], got {t.shape}",
                             field=t.name[:80])
        _check_rows(t.shape[0], limits, f"inputs[{t.name[:80]}]")
        if t.datatype not in _V2_NUMERIC:
            raise InputError(f"inputs[{t.name[:80]}]: datatype {t.datatype[:20]} is not numeric", field=t.name[:80])
        block = _numeric_block(spec, t)
        if block is not None:
            return Batch(BlockColumns(block, spec.feature_index), t.shape[0], block)
        if isinstance(t.data, np.ndarray):
            mat = t.data.reshape(t.shape)
            cols = {f.name: column(f, mat[:, j], limits, f"{t.name}[:, {j}]") for j, f in enumerate(spec.features)}
        else:
            data = t.data
            nf = len(names)
            cols = {f.name: column(f, data[j::nf], limits, f"{t.name}[:, {j}]") for j, f in enumerate(spec.features)}
        return Batch(cols, t.shape[0])
    by_name: dict[str, Tensor] = {}
    for t in tensors:
        if t.name not in names:
            raise InputError(f"unknown input '{t.name[:80]}'; expected {list(names)[:50]}", field=t.name[:80])
        if t.name in by_name:
            raise InputError(f"input '{t.name}' given twice", field=t.name)
        by_name[t.name] = t
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InputError(f"missing input '{missing[0]}'", field=missing[0])
    rows = -1
    cols = {}
    for f in spec.features:
        t = by_name[f.name]
        if len(t.shape) == 2 and t.shape[1] != 1:
            raise InputError(f"inputs[{f.name}]: expected shape [N] or [N, 1], got {t.shape}", field=f.name)
        if rows == -1:
            rows = t.shape[0]
            _check_rows(rows, limits, f"inputs[{f.name}]")
        elif t.shape[0] != rows:
            raise InputError(f"inputs[{f.name}]: {t.shape[0]} rows, other inputs have {rows}", field=f.name)
        if f.kind == "string":
            if t.datatype != "BYTES":
                raise InputError(f"inputs[{f.name}]: expected datatype BYTES, got {t.datatype[:20]}", field=f.name)
        elif t.datatype not in _V2_NUMERIC and not (t.datatype == "BOOL" and f.kind == "boolean"):
            raise InputError(f"inputs[{f.name}]: expected a numeric datatype, got {t.datatype[:20]}", field=f.name)
        cols[f.name] = column(f, t.data, limits, f"inputs[{f.name}]")
    return Batch(cols, rows)


def _numeric_block(spec: ModelSpec, t: Tensor) -> npt.NDArray[np.float64] | None:
    """V2's hot path: one [N, F] numeric tensor checked as one block (as numeric_matrix does for V1 rows).

    None when anything is off (a null or NaN, a bool, a string, a non-finite or non-integral value): the
    per-column path then finds the offending field and names it."""
    if not spec.numbers_only:
        return None
    data = t.data
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "iuf":
            return None
        mat = data.astype(np.float64, copy=False).reshape(t.shape)
    else:
        if not set(map(type, data)) <= {int, float}:
            return None
        try:
            mat = np.array(data, dtype=np.float64).reshape(t.shape)
        except (OverflowError, ValueError):
            return None
    return _checked_block(spec, mat)


def decode_v2(body: Any, spec: ModelSpec, limits: Limits, binary: bytes | None = None) -> V2Request:
    if binary is None:
        fast = _v2_one_block(body, spec, limits)
        if fast is not None:
            return fast
    inputs, rid, requested = parse_v2_json(body)
    return V2Request(decode_tensors(tensors_from_json(inputs, binary), spec, limits), rid, requested)


_SHAPE_MAX = 2**31


def _v2_one_block(body: Any, spec: ModelSpec, limits: Limits) -> V2Request | None:
    """The usual V2 JSON request in one pass: a single flat [N, F] tensor of JSON numbers for an all-numeric
    model, checked as one block. The answer is exactly what parse_v2_json / tensors_from_json / decode_tensors
    give for it; None for anything else (then those run and find what is wrong, or take the per-column path),
    so no error message comes from here."""
    if type(body) is not dict or not spec.numbers_only:
        return None
    inputs = body.get("inputs")
    if type(inputs) is not list or len(inputs) != 1:
        return None
    t = inputs[0]
    if type(t) is not dict:
        return None
    rid = body.get("id")
    if rid is not None and type(rid) is not str:
        return None
    requested: tuple[str, ...] | None = None
    outs = body.get("outputs")
    if outs is not None:
        if type(outs) is not list:
            return None
        names_out = []
        for o in outs:
            if type(o) is not dict or type(o.get("name")) is not str:
                return None
            names_out.append(o["name"])
        requested = tuple(names_out)
    name = t.get("name")
    dt = t.get("datatype")
    shape = t.get("shape")
    data = t.get("data")
    if (type(name) is not str or type(dt) is not str or type(shape) is not list or len(shape) != 2
            or type(data) is not list or t.get("parameters")):
        return None
    n, nf = shape
    features = spec.features
    if (type(n) is not int or type(nf) is not int or not 0 < n <= limits.max_rows or nf != len(features)
            or nf <= 1 or nf > _SHAPE_MAX or n > _SHAPE_MAX or len(data) != n * nf or name in spec.feature_index
            or dt.upper() not in _V2_NUMERIC):
        return None
    if not set(map(type, data)) <= _INT_FLOAT:  # also: flat (no nested lists), no null, no bool, no string
        return None
    try:
        mat = np.array(data, dtype=np.float64).reshape(n, nf)
    except (OverflowError, ValueError):
        return None
    block = _checked_block(spec, mat)
    if block is None:
        return None
    return V2Request(Batch(BlockColumns(block, spec.feature_index), n, block), rid, requested)


_INT_FLOAT = frozenset((int, float))


def split_binary_body(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """The V2 binary data extension: a JSON header of `Inference-Header-Content-Length` bytes, then raw data."""
    try:
        n = int(header_length)
    except ValueError:
        raise InputError("Inference-Header-Content-Length is not an integer", status=400) from None
    if n < 0 or n > len(body):
        raise InputError("Inference-Header-Content-Length exceeds the body", status=400)
    return body[:n], body[n:]
