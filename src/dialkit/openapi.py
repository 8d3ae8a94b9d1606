"""The HTTP API's route registry: each route declares its body, query, response and the
scope its caller needs; the registry authenticates, reads and validates the request with
pydantic, calls the handler, serialises its answer, and describes every route in one
OpenAPI 3.1 document (GET /openapi.json, browsed with Swagger UI at GET /docs).

    routes = Routes(tag="campaigns")

    @routes.post("/api/campaigns", body=CampaignCreate, response=CampaignOut, status=201,
                 scope="write", summary="Create a campaign")
    async def create_campaign(request: web.Request, body: CampaignCreate) -> CampaignOut: ...

    routes.install(app)

- `body=Model`: the JSON body, validated, is the handler's `body` argument (the parsed JSON
  document is also `request["json"]`). `query=Model`: the query string, validated, is its
  `query` argument (a field typed as a list takes every repeated value). Path parameters
  are `request.match_info[...]` (strings, declared by the template).
- The handler returns a pydantic model (or anything `response` describes), sent as JSON
  with `status`; or any `web.StreamResponse`, sent as it is (describe it in `responses=`).
  It raises `ApiError(status, reason, field=None)` for a 4xx.
- Bad input is a 400 `{"error": "<field>: <reason>", "field": "<field>", "details": [...]}`
  (`details`: pydantic's list of every problem). A body is read in full within
  DIALKIT_HTTP_BODY_TIMEOUT_S of its headers (else 408, connection closed).
- `raw_body=True`: the registry does not read the body; the handler streams
  `request.content` (document the media type with `body_media_type=`). Instead of a
  deadline for the whole body, such a request is ended with a 408 when the handler has
  waited DIALKIT_HTTP_BODY_TIMEOUT_S for the next chunk without a byte arriving (time
  the handler spends on its own work, with data waiting, does not count).
- `scope=` "read", "write" or "admin" (default: read for GET, write otherwise), or
  "public" for no key. `request["actor"]` names the caller: the API key's name, or "local"
  when the API is open on loopback. 401 / 403 with a reason otherwise.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Literal, Union, cast, get_args, get_origin

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from dialkit.bodies import BodyError, check_storable, parse_json_body
from dialkit.scopes import Denied, Scope

log = structlog.get_logger("dialkit.openapi")

RouteScope = Scope | Literal["public"]
Handler = Callable[..., Awaitable[Any]]
#: (request, scope needed or None for a public route) → the caller's name; raises Denied
Authenticate = Callable[[web.Request, Scope | None], Awaitable[str]]
#: a handler registered through Routes carries its Route under this attribute
ROUTE_ATTR = "__dialkit_route__"


class ApiError(Exception):
    """A 4xx (or 503) answer with a reason, and the field it is about when there is one."""

    def __init__(self, status: int, reason: str, field: str | None = None, **extra: Any) -> None:
        self.status = status
        self.reason = reason
        self.field = field
        self.extra = extra
        super().__init__(reason)


class ErrorBody(BaseModel):
    """Every refusal: the reason, and the field it is about when there is one."""

    model_config = ConfigDict(extra="allow")
    error: str
    field: str | None = None


def error_response(status: int, reason: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": reason}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return web.json_response(body, status=status)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    tag: str | None
    body: Any = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    scope: Scope | None = "read"
    summary: str | None = None
    raw_body: bool = False
    body_media_type: str = "application/json"
    #: extra documented answers: status → description, pydantic type, or an OpenAPI response object
    responses: Mapping[int, Any] = field(default_factory=dict)
    #: put before every validation message of this route ("invalid call request: …")
    error_prefix: str | None = None
    #: refuse values PostgreSQL cannot store (NUL, lone surrogates, > 64-bit integers…)
    check_storable: bool = True


@dataclass
class ApiConfig:
    """What the registry needs from the application (set by build_app)."""

    authenticate: Authenticate | None = None
    body_timeout_s: float = 15.0
    title: str = "dialkit"
    version: str = "0.1.0"


API_CONFIG = web.AppKey("dialkit_api_config", ApiConfig)


@dataclass
class Installed:
    """The routes installed in one application, and their document once built."""

    routes: list[Route] = field(default_factory=list)
    document: dict[str, Any] | None = None
    #: the groups (Routes) installed, by id: installing one twice adds nothing
    groups: set[int] = field(default_factory=set)


INSTALLED = web.AppKey("dialkit_api_routes", Installed)


class Routes:
    """A group of API routes sharing a tag in the document."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(self, method: str, path: str, *, body: Any = None, query: type[BaseModel] | None = None,
              response: Any = None, status: int = 200, scope: RouteScope | None = None,
              summary: str | None = None, raw_body: bool = False, body_media_type: str | None = None,
              responses: Mapping[int, Any] | None = None, error_prefix: str | None = None,
              check_storable: bool = True) -> Callable[[Handler], Handler]:
        if raw_body and body is not None:
            raise ValueError("a raw_body route streams its body: it cannot also declare body=")
        needed: Scope | None
        if scope == "public":
            needed = None
        elif scope is None:
            needed = "read" if method == "GET" else "write"
        else:
            needed = scope

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(
                method=method, path=path, handler=handler, tag=self.tag, body=body, query=query,
                response=response, status=status, scope=needed, summary=summary, raw_body=raw_body,
                body_media_type=body_media_type or ("application/octet-stream" if raw_body else "application/json"),
                responses=dict(responses or {}), error_prefix=error_prefix, check_storable=check_storable,
            ))
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def install(self, app: web.Application) -> None:
        """Add these routes to `app` (in declaration order), and the first time,
        GET /openapi.json and the Swagger UI under /docs. Installing a group twice in one
        application adds nothing the second time."""
        if INSTALLED not in app:
            from dialkit import swagger  # the document and the UI: only when routes exist

            app[INSTALLED] = Installed()
            if API_CONFIG not in app:
                app[API_CONFIG] = ApiConfig()
            swagger.add_routes(app)
        if id(self) in app[INSTALLED].groups:
            return
        app[INSTALLED].groups.add(id(self))
        for route in self.routes:
            app[INSTALLED].routes.append(route)
            app.router.add_route(route.method, route.path, _endpoint(route))


# ---- serving one request ---------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...]) -> str | None:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or None


def _invalid(route: Route, exc: ValidationError) -> ApiError:
    # without the input: the client has it, and echoing a large body back helps no one
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    where = _field_path(tuple(first["loc"]))
    reason = f"{where}: {first['msg']}" if where else first["msg"]
    if route.error_prefix:
        reason = f"{route.error_prefix}: {reason}"
    return ApiError(400, reason, field=where, details=errors)


def _body_refused(route: Route, exc: BodyError) -> ApiError:
    reason = f"{route.error_prefix}: {exc}" if route.error_prefix else str(exc)
    return ApiError(400, reason, field=exc.field)


def _query_input(model: type[BaseModel], request: web.Request) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in dict.fromkeys(request.query.keys()):
        values = request.query.getall(name)
        info = model.model_fields.get(name)
        found[name] = values if info is not None and _many(info.annotation) else values[-1]
    return found


def _many(annotation: Any) -> bool:
    """A list-like type, or an optional one (`list[str] | None`)."""
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return get_origin(annotation) in (Union, UnionType) and any(_many(a) for a in get_args(annotation))


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    try:
        return await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"request body larger than {request.client_max_size} bytes") from None


async def _stream_idle_guard(request: web.Request, task: asyncio.Task[Any], idle_s: float) -> bool:
    """Cancel `task` if it waits `idle_s` for body bytes that do not come; True if it did."""
    content = request.content
    seen, since = content.total_bytes, time.monotonic()
    step = min(1.0, idle_s / 4)
    while not task.done():
        await asyncio.sleep(step)
        if content.is_eof():
            return False
        now = time.monotonic()
        # aiohttp sets `_waiter` while a read waits for data; otherwise the handler is busy
        waiting = getattr(content, "_waiter", None) is not None
        if content.total_bytes != seen or not waiting:
            seen, since = content.total_bytes, now
        elif now - since >= idle_s:
            task.cancel()
            return True
    return False


def _keep(request: web.Request, key: str, value: Any) -> None:
    # plain string keys are the interface handlers read (request["actor"]); aiohttp
    # would warn on every request that a RequestKey is preferred
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        request[key] = value


async def _serve(route: Route, request: web.Request, config: ApiConfig) -> web.StreamResponse:
    if config.authenticate is not None:
        try:
            _keep(request, "actor", await config.authenticate(request, route.scope))
        except Denied as exc:
            raise ApiError(exc.status, exc.reason) from None
    else:
        _keep(request, "actor", "local")
    kwargs: dict[str, Any] = {}
    try:  # a NUL or an unpaired surrogate in a path parameter would reach SQL
        check_storable(dict(request.match_info))
    except BodyError as exc:
        raise ApiError(400, f"{exc.field}: {exc.reason}", field=exc.field) from None
    if route.query is not None:
        try:
            query = kwargs["query"] = route.query.model_validate(_query_input(route.query, request))
        except ValidationError as exc:
            raise _invalid(route, exc) from None
        try:  # nor may a query value the database cannot take (text with NUL, > 64-bit integers)
            check_storable(query.model_dump())
        except BodyError as exc:
            raise ApiError(400, f"{exc.field}: {exc.reason}", field=exc.field) from None
    if not route.raw_body and request.body_exists:
        raw = await _read_body(request, config.body_timeout_s)
        if route.body is not None:
            try:
                document = parse_json_body(raw)
            except BodyError as exc:
                raise _body_refused(route, exc) from None
            _keep(request, "json", document)
            try:
                kwargs["body"] = _adapter(route.body).validate_python(document)
            except ValidationError as exc:
                raise _invalid(route, exc) from None
            if route.check_storable:
                try:
                    check_storable(document)
                except BodyError as exc:
                    raise _body_refused(route, exc) from None
    elif route.body is not None:
        raise ApiError(400, "a JSON request body is required")
    if not route.raw_body:
        result = await route.handler(request, **kwargs)
    else:
        task = asyncio.ensure_future(route.handler(request, **kwargs))
        guard = asyncio.ensure_future(_stream_idle_guard(request, task, config.body_timeout_s))
        try:
            result = await task
        except asyncio.CancelledError:
            if guard.done() and guard.result():
                raise ApiError(408, f"no request body data for {config.body_timeout_s:g} s") from None
            raise
        finally:
            guard.cancel()
    return _answer(route, result)


def _answer(route: Route, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None or route.status == 204:
        return web.Response(status=route.status if route.status != 200 else 204)
    kind = route.response
    if isinstance(kind, type) and issubclass(kind, BaseModel) and not isinstance(result, kind):
        result = kind.model_validate(result)  # a handler may answer the model's fields as a dict
    if kind is not None:
        data = _adapter(kind).dump_json(result)
    elif isinstance(result, BaseModel):
        data = result.model_dump_json().encode()
    else:
        return web.json_response(result, status=route.status)
    return web.Response(body=data, status=route.status, content_type="application/json")


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


async def send_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response`, then close the connection at once: aiohttp would otherwise wait
    (up to 10 s) for the rest of a body that is not coming before it closes."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes what was written, then closes
    return response


def _endpoint(route: Route) -> Handler:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        config = request.app[API_CONFIG]
        try:
            return await _serve(route, request, config)
        except ApiError as exc:
            response = error_response(exc.status, exc.reason, field=exc.field, **exc.extra)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="dialkit"'  # RFC 6750
            if exc.status == 408:
                return await send_and_close(request, response)
            # an unread (or half-read) body cannot be skipped safely: end the connection
            if request.body_exists and (route.raw_body or getattr(request, "_read_bytes", None) is None):
                response.force_close()
            return response

    setattr(endpoint, ROUTE_ATTR, route)
    endpoint.__name__ = getattr(route.handler, "__name__", "endpoint")
    endpoint.__doc__ = route.handler.__doc__
    return cast(Handler, endpoint)
