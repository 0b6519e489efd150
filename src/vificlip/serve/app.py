"""HTTP transport: the FastAPI app (routes, request parsing, one-line JSON errors) over a :class:`Service`.

Every bad request is answered ``{"error": "<part>: <what was expected>"}`` with a 4xx status, and nothing a
request sends is ever loaded as a checkpoint or an index. The OpenAPI description is at ``/openapi.json``; FastAPI's
``/docs`` and ``/redoc`` pages are off because they load their scripts from a CDN, and the server may be offline.
"""

from __future__ import annotations

import contextlib
import json
import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from .config import ServeConfig
from .errors import RequestError
from .service import Service
from .uploads import DRAIN_FACTOR, Upload, read_multipart

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files(__package__) / "static"))
VIDEO_FIELD = "video"


class PredictRequest(BaseModel):
    """A recognition: a video (uploaded as ``video``, or ``path`` under --root) and the classes to choose from."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(
        None, description="video path relative to the server's --root (instead of an upload)"
    )
    classes: list[str] | str | None = Field(
        None, description='class names: a list, or text "a, b" / one per line'
    )
    labels: str | None = Field(None, description="a bundled label set by name (see GET /api/labels)")
    top_k: int = Field(5, ge=1, description="classes returned, most probable first")
    frames: int | None = Field(None, ge=1, description="frames sampled (default: the server's --frames)")
    attention: bool = Field(False, description="also return the frames and their attention-rollout overlays")


class SearchRequest(BaseModel):
    """A search: ``text``, or ``like`` (result ids: more like these), or a video (upload or ``path``)."""

    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    like: list[int] | None = Field(
        None, description="ids of indexed videos; their mean embedding is the query"
    )
    path: str | None = None
    k: int = Field(8, ge=1, description="results, best first")


class ClassProbability(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class")
    probability: float


class PredictResponse(BaseModel):
    """``vificlip predict --json``'s object plus how the request was served."""

    video: str
    top_k: list[ClassProbability]
    batch_size: int = Field(description="requests that shared this model call")
    timings_ms: dict[str, float]
    frames: list[str] | None = Field(None, description="sampled frames as PNG data URIs (attention=true)")
    attention: list[str] | None = Field(
        None, description="the frames with the rollout overlay (attention=true)"
    )


class SearchHitModel(BaseModel):
    id: int
    path: str
    label: str
    score: float
    preview: str


class SearchResponse(BaseModel):
    query: str
    results: list[SearchHitModel]


class ErrorResponse(BaseModel):
    error: str = Field(description="one line: the request part, then what was expected")


def _body_schema(model: type[BaseModel], file_description: str) -> dict:
    """OpenAPI request body: the model as JSON, or the same fields as a multipart form plus the video file."""
    form = model.model_json_schema()
    form["properties"] = {**form["properties"], VIDEO_FIELD: {"type": "string", "format": "binary",
                                                              "description": file_description}}  # fmt: skip
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}, "multipart/form-data": {"schema": form}}}}  # fmt: skip


ERRORS = {status: {"model": ErrorResponse} for status in (400, 403, 404, 413, 415)}


def _first_error(exc: ValidationError | RequestValidationError) -> RequestError:
    error = exc.errors()[0]
    loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")) or "body"
    return RequestError(loc, error.get("msg", "invalid value"))


async def _read_json(request: Request, limit: int) -> dict:
    body, received = bytearray(), 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > DRAIN_FACTOR * limit:
            break
        if received <= limit:
            body += chunk
    if received > limit:  # read (up to a point) before answering, so the client sees the 413, not a reset
        raise RequestError("body", f"JSON body larger than {limit:,} bytes", 413)
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError("body", f"malformed JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError("body", "expected a JSON object")
    return data


async def _read_request(
    request: Request, service: Service, model: type[BaseModel]
) -> tuple[BaseModel, Upload]:
    """JSON or multipart → (validated fields, the upload, if any). The caller removes the upload."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    config = service.config
    if kind == "multipart/form-data":
        upload = await read_multipart(
            request, service.tmp, VIDEO_FIELD, config.max_upload_bytes, config.max_form_bytes
        )
        fields: dict = dict(upload.fields)
        if "like" in fields and model is SearchRequest:
            fields["like"] = fields["like"].replace(",", " ").split()
    elif kind == "application/json":
        upload, fields = Upload(), await _read_json(request, config.max_form_bytes)
    else:
        raise RequestError(
            "body", f"content type {kind or 'none'!r}; send application/json or multipart/form-data", 415
        )
    try:
        parsed = model.model_validate(fields)
    except ValidationError as exc:
        upload.remove()
        raise _first_error(exc) from None
    for name in ("top_k", "k"):  # how many results: one limit for both endpoints
        if getattr(parsed, name, 0) > config.max_results:
            upload.remove()
            raise RequestError(name, f"{getattr(parsed, name)}; at most {config.max_results}")
    return parsed, upload


def _video_source(service: Service, upload: Upload, path: str | None) -> tuple[Path, str, str]:
    """(file, name shown, request part) of the request's video: the upload or a path under --root."""
    if upload.file is not None and path:
        raise RequestError("path", f"give an uploaded '{VIDEO_FIELD}' or a path, not both")
    if upload.file is not None:
        if upload.size == 0:
            raise RequestError(VIDEO_FIELD, f"{upload.filename!r} is empty (0 bytes)")
        return upload.file, upload.filename or "upload", VIDEO_FIELD
    if path:
        return service.video_path(path), path, "path"
    raise RequestError(VIDEO_FIELD, f"no video: upload one as '{VIDEO_FIELD}' or give a path under --root")


def create_app(config: ServeConfig | None = None, service: Service | None = None) -> FastAPI:
    """The app; pass a built ``service`` to share one model between apps (tests), else one is built here."""
    service = service or Service(config or ServeConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await service.close()

    app = FastAPI(title="vificlip", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Video recognition with any class names, attention maps, and text → video search.")  # fmt: skip
    app.state.service = service

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = _first_error(exc)
        return JSONResponse({"error": error.message}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{request.url.path}: {exc.detail}"}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        return JSONResponse({"error": f"internal error: {message}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health", summary="the server is up; model, limits and batching counters")
    async def health() -> dict:
        return service.health()

    @app.get("/api/labels", summary="bundled label sets and the server's default class list")
    async def labels() -> dict:
        return service.labels()

    @app.get("/api/labels/{name}", summary="the class names of one bundled label set", responses=ERRORS)
    async def label_set(name: str) -> dict:
        return {"name": name, "classes": service.label_set(name)}

    @app.get("/api/videos", summary="videos under --root that /api/predict accepts as path")
    async def videos() -> dict:
        return {"videos": service.videos()}

    @app.post("/api/predict", summary="top-k classes of one video (the shape of `vificlip predict --json`)",
              response_model=PredictResponse, responses=ERRORS,
              openapi_extra=_body_schema(PredictRequest, "the video file"))  # fmt: skip
    async def predict(request: Request) -> JSONResponse:
        fields, upload = await _read_request(request, service, PredictRequest)
        try:
            classes = service.class_list(fields.classes, fields.labels)
            path, name, part = _video_source(service, upload, fields.path)
            answer = await service.predict(
                path, name, classes, fields.top_k, fields.frames, fields.attention, part
            )
        finally:
            upload.remove()
        return JSONResponse(answer)

    @app.post("/api/search", summary="videos of --index ranked by a text, a video, or result ids",
              response_model=SearchResponse, responses=ERRORS,
              openapi_extra=_body_schema(SearchRequest, "a query video"))  # fmt: skip
    async def search(request: Request) -> JSONResponse:
        fields, upload = await _read_request(request, service, SearchRequest)
        try:
            k = fields.k
            given = [n for n, v in (("text", fields.text), ("like", fields.like), ("path", fields.path or upload.file))
                     if v not in (None, [])]  # fmt: skip
            if len(given) != 1:
                raise RequestError(
                    "body", f"give exactly one of text, like, a path or an uploaded '{VIDEO_FIELD}'"
                )
            if fields.text is not None:
                results, query = await service.search_text(fields.text, k), fields.text
            elif fields.like is not None:
                results, query = await service.search_like(fields.like, k), service.describe_like(fields.like)
            else:
                path, name, part = _video_source(service, upload, fields.path)
                results, query = await service.search_video(path, part, k), name
        finally:
            upload.remove()
        return JSONResponse({"query": query, "results": results})

    @app.get("/api/preview/{row}.gif", summary="an animated preview of an indexed video", responses=ERRORS,
             response_class=Response)  # fmt: skip
    async def preview(row: int) -> Response:
        return Response(await service.preview(row), media_type="image/gif",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip

    return app
