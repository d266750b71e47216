"""The console's FastAPI application: pages, the decision endpoint, signed-link verification."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from modelops.api.audit import ANN_LAST_DECISION, Record
from modelops.console import evidence as evidence_mod
from modelops.console import svg, views
from modelops.console.auth import COOKIE, Authenticator, User
from modelops.console.config import ConsoleSettings
from modelops.console.kube import Kube, KubeError
from modelops.console.mirror import Mirror
from modelops.console.overview import Overview
from modelops.console.overview import page as overview_page
from modelops.console.sources import DriftExporter, Mlflow, Prometheus, SourceError, gather_quiet, predict
from modelops.desired import approval_link as links
from modelops.desired import audit
from modelops.desired.approval_message import digest, fmt, fmt_delta

HERE = Path(__file__).parent
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: rows per table on the overview (objects awaiting approval first)
PAGE_SIZE = 100
#: seconds the model page reuses MLflow's version list and aliases (the approval view reads them fresh)
MODEL_PAGE_MAX_AGE = 5.0
#: seconds the overview reuses Prometheus' drift shares
DRIFT_MAX_AGE = 5.0
KIND_TITLES = {"modeldeployments": "ModelDeployment", "retrainschedules": "RetrainSchedule"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_names(*names: str) -> None:
    for n in names:
        if not NAME_RE.match(n):
            raise HTTPException(404, f"not a Kubernetes object name: {n!r}")


class State:
    def __init__(self, settings: ConsoleSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        t = settings.http_timeout_seconds
        self.mlflow = Mlflow(settings.mlflow_tracking_uri, t)
        self.prom = Prometheus(settings.prometheus_url, t)
        self.exporter = DriftExporter(settings.drift_exporter_url, t, settings.drift_token)
        self.secret = settings.link_secret()
        csrf_key = hashlib.sha256(b"modelops-console-csrf" + (self.secret or kube.server.encode())).digest()
        self.auth = Authenticator(kube, settings.auth_cache_seconds, csrf_key)

    async def close(self) -> None:
        for c in (self.mlflow.http, self.prom.http, self.exporter.http):
            await c.aclose()
        await self.kube.close()


def create_app(settings: ConsoleSettings, kube: Kube | None = None) -> FastAPI:
    state = State(settings, kube or Kube.from_env(settings.kubeconfig))

    mirrors: dict[str, list[Mirror]] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        for plural in ("modeldeployments", "retrainschedules"):
            scopes: list[str | None] = list(namespaces) if namespaces else [None]
            mirrors[plural] = [Mirror(state.kube, plural, ns) for ns in scopes]
            tasks += [asyncio.create_task(m.run()) for m in mirrors[plural]]
        task = None
        if settings.smtp_secret_dir or settings.slack_webhook_file:
            from modelops.console.notifier import Notifier
            from modelops.console.smtp import SmtpConfig

            slack = Path(settings.slack_webhook_file).read_text().strip() if settings.slack_webhook_file else ""
            notifier = Notifier(state.kube, state.mlflow, state.prom, public_url=settings.public_url,
                                secret=state.secret, slack_url=slack, ttl=settings.link_ttl_seconds,
                                smtp_cfg=SmtpConfig.from_dir(settings.smtp_secret_dir) if settings.smtp_secret_dir
                                else None, namespaces=settings.namespace_list() or None)
            app.state.notifier = notifier
            task = asyncio.create_task(notifier.run(settings.notify_interval_seconds))
        yield
        for t in [*tasks, *([task] if task is not None else [])]:
            t.cancel()
        await state.close()

    app = FastAPI(title="modelops console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    tpl = Jinja2Templates(directory=str(HERE / "templates"))
    tpl.env.globals.update(fmt=fmt, fmt_delta=fmt_delta, kind_titles=KIND_TITLES, quote=quote)
    namespaces = settings.namespace_list() or None

    def token_of(request: Request) -> str:
        h = request.headers.get("authorization", "")
        if h.lower().startswith("bearer "):
            return h[7:].strip()
        return request.cookies.get(COOKIE, "")

    async def current_user(request: Request) -> User | None:
        try:
            return await state.auth.user(token_of(request))
        except KubeError as exc:
            raise HTTPException(503, f"the API server could not review the token: {exc}") from None

    def wants_html(request: Request) -> bool:
        return "text/html" in request.headers.get("accept", "") and not request.headers.get("authorization")

    async def require_user(request: Request) -> User:
        user = await current_user(request)
        if user is None:
            if wants_html(request):
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                raise HTTPException(303, headers={"Location": f"/login?next={quote(target, safe='')}"})
            raise HTTPException(401, "authenticate with a Kubernetes bearer token", {"WWW-Authenticate": "Bearer"})
        return user

    def render(request: Request, template: str, user: User | None, status: int = 200, **ctx: Any) -> HTMLResponse:
        return tpl.TemplateResponse(request, template, {"user": user, **ctx}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (301, 302, 303) and exc.headers and "Location" in exc.headers:
            return RedirectResponse(exc.headers["Location"], status_code=exc.status_code)
        if wants_html(request):
            return render(request, "error.html", None, exc.status_code, code=exc.status_code, detail=exc.detail)
        return JSONResponse({"status": exc.status_code, "detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        resp: Response = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    # ---- session ---------------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", None, next=next if next.startswith("/") else "/", error="")

    @app.post("/login")
    async def login(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:
        token = token.strip()
        try:
            user = await state.auth.user(token)
        except KubeError as exc:
            raise HTTPException(503, f"the API server could not review the token: {exc}") from None
        if user is None:
            return render(request, "login.html", None, 401, next=next,
                          error="The API server did not accept this token.")
        resp = RedirectResponse(next if next.startswith("/") and not next.startswith("//") else "/", 303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookies,
                        max_age=8 * 3600)
        return resp

    @app.post("/logout")
    async def logout() -> Response:
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    # ---- overview --------------------------------------------------------------------------------------
    async def objects_of(plural: str) -> list[dict[str, Any]]:
        ms = mirrors.get(plural) or []
        if ms and all(m.ready.is_set() for m in ms):
            return [o for m in ms for o in m.objects()]
        return await state.kube.list_objects(plural, namespaces)

    rows_cache = Overview(tpl.env)  # rows and their HTML per object version (console/overview.py)
    drift_cache: dict[str, Any] = {"at": -1e9, "value": None}
    drift_lock = asyncio.Lock()

    async def drift_shares() -> list[dict[str, Any]] | str:
        """Prometheus' drift share per model, reused for DRIFT_MAX_AGE seconds and fetched by one request at a
        time (the page refreshes itself every 5 s; a scrape is 15-60 s apart)."""
        async with drift_lock:
            if time.monotonic() - drift_cache["at"] >= DRIFT_MAX_AGE:
                got = await gather_quiet(state.prom.query("max by (model) (modelops_drift_share)"))
                drift_cache.update(at=time.monotonic(), value=got[0])
            value: list[dict[str, Any]] | str = drift_cache["value"]
            return value

    async def overview_rows(page: int = 1, ns: str = "") -> dict[str, Any]:
        mds, rss, drift = await gather_quiet(objects_of("modeldeployments"), objects_of("retrainschedules"),
                                             drift_shares())
        shares: dict[str, float] = {}
        errors = []
        if isinstance(drift, str):
            errors.append(drift)
        else:
            for r in drift:
                try:
                    shares[str(r["metric"].get("model"))] = float(r["value"][1])
                except (KeyError, ValueError, TypeError):
                    continue
        ms = [*(mirrors.get("modeldeployments") or []), *(mirrors.get("retrainschedules") or [])]
        key = None
        if ms and all(m.ready.is_set() for m in ms):
            key = (tuple(id(m) for m in ms), tuple(m.version for m in ms), tuple(sorted(shares.items())))
        all_md, all_rs = rows_cache.sorted_rows(key, mds, rss, shares)
        md_rows = overview_page(all_md, ns, page, PAGE_SIZE)
        rs_rows = overview_page(all_rs, ns, page, PAGE_SIZE)
        return {"deployments": md_rows["rows"], "schedules": rs_rows["rows"], "errors": errors, "time": _now(),
                "page": page, "ns": ns, "pages": max(md_rows["pages"], rs_rows["pages"]),
                "totals": {"deployments": md_rows["total"], "schedules": rs_rows["total"],
                           "awaiting": md_rows["awaiting"] + rs_rows["awaiting"]},
                "html": {"deployments": md_rows["html"], "schedules": rs_rows["html"]}}

    @app.get("/", response_class=HTMLResponse)
    async def overview(request: Request, page: int = 1, ns: str = "") -> HTMLResponse:
        user = await require_user(request)
        if page < 1 or (ns and not NAME_RE.match(ns)):
            raise HTTPException(400, "page must be >= 1 and ns a namespace name")
        try:
            data = await overview_rows(page, ns)
        except KubeError as exc:
            raise HTTPException(502, f"API server: {exc}") from None
        html = data.pop("html")
        return render(request, "overview.html", user, deployments_html=html["deployments"],
                      schedules_html=html["schedules"], **data)

    @app.get("/api/overview")
    async def overview_json(request: Request, page: int = 1, ns: str = "") -> Response:
        await require_user(request)
        if page < 1 or (ns and not NAME_RE.match(ns)):
            raise HTTPException(400, "page must be >= 1 and ns a namespace name")
        try:
            data = await overview_rows(page, ns)
            data.pop("html")
            # the rows are JSON already (str, numbers, None, lists): no jsonable_encoder walk over 200 rows
            return JSONResponse(data)
        except KubeError as exc:
            raise HTTPException(502, f"API server: {exc}") from None

    # ---- a model's page --------------------------------------------------------------------------------
    async def get_obj(plural: str, ns: str, name: str) -> dict[str, Any]:
        try:
            return await state.kube.get(plural, ns, name)
        except KubeError as exc:
            if exc.status == 404:
                raise HTTPException(404, f"{KIND_TITLES.get(plural, plural)} {ns}/{name} not found") from None
            raise HTTPException(502, f"API server: {exc}") from None

    async def drift_plot(model: str) -> tuple[str, str]:
        end = time.time()
        start = end - 6 * 3600
        q = f'max by (feature) (modelops_drift_feature_score_ratio{{model="{evidence_mod._q(model)}"}})'
        try:
            rows = await state.prom.query_range(q, start, end, 30)
        except SourceError as exc:
            return "", str(exc)
        series = {str(r["metric"].get("feature", "?")): [(float(t), float(v)) for t, v in r.get("values") or []]
                  for r in rows}
        return svg.lines(series, y_label="drift score / threshold (1 = drift), last 6 h", threshold=1.0), ""

    @app.get("/models/{ns}/{name}", response_class=HTMLResponse)
    async def model_page(request: Request, ns: str, name: str) -> HTMLResponse:
        user = await require_user(request)
        _check_names(ns, name)
        obj = await get_obj("modeldeployments", ns, name)
        model = views.model_of("modeldeployments", obj)
        st = obj.get("status") or {}
        isvc_name = _isvc_name(st, name)
        isvc, versions, registered, plot, window, events = await gather_quiet(
            _isvc(state.kube, ns, isvc_name), state.mlflow.versions(model, max_age=MODEL_PAGE_MAX_AGE),
            state.mlflow.registered(model, max_age=MODEL_PAGE_MAX_AGE),
            drift_plot(model), state.exporter.drift(model, ns), _events(state.kube, ns, name))
        errors = [x for x in (versions, registered, window) if isinstance(x, str)]
        decisions: dict[str, list[Record]] = {}
        for v in versions if isinstance(versions, list) else []:
            recs = audit.records_from_tags({t["key"]: t["value"] for t in v.get("tags") or []})
            if recs:
                decisions[str(v.get("version"))] = recs
        rows = views.version_rows(versions if isinstance(versions, list) else [],
                                  (registered or {}).get("aliases") or [] if isinstance(registered, dict) else [],
                                  st.get("history") or [], decisions)
        return render(request, "model.html", user, obj=obj, ns=ns, name=name, model=model, st=st,
                      steps=views.rollout_steps(obj), thresholds=views.metric_thresholds(obj), versions=rows,
                      isvc=isvc if isinstance(isvc, dict) else {}, drift_svg=plot[0], drift_error=plot[1],
                      window=window if isinstance(window, dict) else {}, events=events, errors=errors,
                      pending=[p.version for p in links.pending_approvals("modeldeployments", obj)])

    @app.post("/models/{ns}/{name}/predict")
    async def try_prediction(request: Request, ns: str, name: str) -> Response:
        await require_user(request)
        _check_names(ns, name)
        obj = await get_obj("modeldeployments", ns, name)
        try:
            body = await request.json()
            inputs = body["inputs"]
            if not isinstance(inputs, list) or not inputs:
                raise ValueError("inputs must be a non-empty list of V2 tensors")
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPException(400, f"expected a KServe V2 body {{\"inputs\": [...]}}: {exc}") from None
        st = obj.get("status") or {}
        isvc = await _isvc(state.kube, ns, _isvc_name(st, name))
        url = ((isvc.get("status") or {}).get("address") or {}).get("url") or (isvc.get("status") or {}).get("url")
        if not url:
            raise HTTPException(409, "the InferenceService reports no URL yet")
        try:
            out = await predict(url, name, inputs, settings.http_timeout_seconds)
        except SourceError as exc:
            raise HTTPException(502, str(exc)) from None
        return JSONResponse(out, status_code=200 if out.get("_status", 500) < 300 else 502)

    @app.get("/schedules/{ns}/{name}", response_class=HTMLResponse)
    async def schedule_page(request: Request, ns: str, name: str) -> HTMLResponse:
        user = await require_user(request)
        _check_names(ns, name)
        obj = await get_obj("retrainschedules", ns, name)
        return render(request, "schedule.html", user, obj=obj, ns=ns, name=name,
                      model=views.model_of("retrainschedules", obj), st=obj.get("status") or {},
                      pending=[p.version for p in links.pending_approvals("retrainschedules", obj)],
                      events=await _events(state.kube, ns, name))

    @app.get("/artifacts/{run_id}/{path:path}")
    async def artifact(request: Request, run_id: str, path: str) -> Response:
        await require_user(request)
        if not re.match(r"^[0-9a-f]{32}$", run_id) or ".." in path or not path.endswith(".png"):
            raise HTTPException(404, "only PNG plots of a run are served")
        try:
            return Response(await state.mlflow.artifact(run_id, path), media_type="image/png",
                            headers={"Cache-Control": "private, max-age=3600"})
        except SourceError as exc:
            raise HTTPException(502, str(exc)) from None

    # ---- approvals -------------------------------------------------------------------------------------
    def check_kind(kind: str, ns: str, name: str, version: str) -> None:
        if kind not in links.KINDS:
            raise HTTPException(404, f"no approvals for {kind!r}")
        _check_names(ns, name)
        if not VERSION_RE.match(version):
            raise HTTPException(404, f"not a version: {version!r}")

    @app.get("/approvals/{kind}/{ns}/{name}/{version}", response_class=HTMLResponse)
    async def approval_view(request: Request, kind: str, ns: str, name: str, version: str,
                            token: str = "", decision: str = "", done: str = "") -> HTMLResponse:
        user = await require_user(request)
        check_kind(kind, ns, name, version)
        obj = await get_obj(kind, ns, name)
        pending = next((p for p in links.pending_approvals(kind, obj) if p.version == version), None)
        (ev, extra), (allowed, why) = await asyncio.gather(
            evidence_mod.gather(kind, obj, version, state.mlflow, state.prom),
            state.auth.may_decide(user, kind, ns, name, for_display=True))
        link_error = ""
        if token:
            try:
                claims = verify_token(token, kind, ns, name, version, decision)
                links.match(claims, obj)
            except links.LinkError as exc:
                link_error = str(exc)
        ann = (obj.get("metadata") or {}).get("annotations") or {}
        last = None
        if ann.get(ANN_LAST_DECISION):
            try:
                last = Record.from_json(ann[ANN_LAST_DECISION])
            except (ValueError, TypeError):
                last = None
        return render(request, "approval.html", user, kind=kind, ns=ns, name=name, version=version, ev=ev,
                      sha=digest(ev), pending=pending, allowed=allowed, why=why, csrf=state.auth.csrf(user),
                      token=token if token and not link_error else "", decision=decision, link_error=link_error,
                      run_id=extra["run_id"], errors=extra["errors"], last=last, done=done)

    def verify_token(token: str, kind: str, ns: str, name: str, version: str, decision: str) -> links.Claims:
        if state.secret is None:
            raise links.LinkError("disabled", "signed links are not configured on this console")
        claims = links.verify(state.secret, token, time.time())
        if (claims.kind, claims.namespace, claims.name, claims.version, claims.decision) != (
                kind, ns, name, version, decision):
            raise links.LinkError("mismatch", "the link was issued for another object, version or decision")
        return claims

    @app.post("/approvals/{kind}/{ns}/{name}/{version}")
    async def decide(request: Request, kind: str, ns: str, name: str, version: str,
                     decision: str = Form(...), csrf: str = Form(""), evidence_sha256: str = Form(""),
                     token: str = Form("")) -> Response:
        user = await require_user(request)
        check_kind(kind, ns, name, version)
        if decision not in links.DECISIONS:
            raise HTTPException(400, f"decision must be one of {links.DECISIONS}")
        if not request.headers.get("authorization") and not state.auth.csrf_ok(user, csrf):
            raise HTTPException(403, "the form's CSRF token does not match this session; reload the page")
        allowed, why = await state.auth.may_decide(user, kind, ns, name)
        if not allowed:
            raise HTTPException(403, f"{user.username} may not approve {kind}/{ns}/{name} (needs the verb "
                                f"'approve' on {kind}.modelops.dev){': ' + why if why else ''}")
        obj = await get_obj(kind, ns, name)
        pending = next((p for p in links.pending_approvals(kind, obj) if p.version == version), None)
        via = "console"
        if token:
            try:
                claims = verify_token(token, kind, ns, name, version, decision)
                pending = links.match(claims, obj)
            except links.LinkError as exc:
                raise HTTPException(409 if exc.reason == "stale" else 403, f"signed link refused: {exc}") from None
            via = "link"
        if pending is None:
            raise HTTPException(409, f"version {version} of {kind}/{ns}/{name} does not await approval "
                                "(already decided, superseded, or never held)")
        if evidence_sha256 and not re.match(r"^[0-9a-f]{64}$", evidence_sha256):
            raise HTTPException(400, "evidence_sha256 must be 64 lower-case hex digits")
        if not evidence_sha256:
            ev, _extra = await evidence_mod.gather(kind, obj, version, state.mlflow, state.prom)
            evidence_sha256 = digest(ev)
        model = views.model_of(kind, obj)
        record = Record(action=decision, actor=user.username, time=_now(), kind=kind, namespace=ns,
                              name=name, model=model, version=version, evidence_sha256=evidence_sha256, via=via)
        key = links.ANN_APPROVE if decision == "approve" else links.ANN_REJECT
        meta = obj.get("metadata") or {}
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"),
                              "annotations": {key: version, ANN_LAST_DECISION: record.as_json()}}}
        try:
            obj = await state.kube.merge_patch(kind, ns, name, patch)
        except KubeError as exc:
            if exc.status == 409:
                raise HTTPException(409, "the object changed while you decided; reload and decide again") from None
            raise HTTPException(502, f"API server: {exc}") from None
        warnings = []
        ev_doc = record.event()
        mirrors = await asyncio.gather(
            state.kube.create_event(obj, ev_doc["type"], ev_doc["reason"], ev_doc["message"], record.time),
            state.mlflow.set_version_tags(model, version, record.mlflow_tags()), return_exceptions=True)
        for m in mirrors:
            if isinstance(m, KubeError | SourceError):
                warnings.append(str(m))
            elif isinstance(m, BaseException):
                raise m
        if wants_html(request) or "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(f"/approvals/{kind}/{ns}/{name}/{version}?done={decision}", 303)
        return JSONResponse({"decision": decision, "record": record.as_json(), "warnings": warnings})

    return app


def _isvc_name(status: Mapping[str, Any], name: str) -> str:
    """The InferenceService a ModelDeployment's status names (`status.inferenceService`, a name: the CRD's
    type), else the ModelDeployment's own name (the operator gives it that name)."""
    value = status.get("inferenceService")
    return value if isinstance(value, str) and value else name


async def _isvc(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    try:
        return await kube.get("inferenceservices", ns, name, group="serving.kserve.io", version="v1beta1")
    except KubeError as exc:
        if exc.status in (403, 404):
            return {}
        raise SourceError(f"InferenceService {ns}/{name}: {exc}") from None


async def _events(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    try:
        items = await kube.events(ns, name)
    except KubeError:
        return []
    return sorted(items, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)[:20]
