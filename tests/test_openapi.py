"""The route registry over a real socket: bodies and query strings validated with a reason
naming the field, answers serialised, a streamed body cut off when it stalls, and the
OpenAPI 3.1 document (valid by schemathesis' loader) with Swagger UI served offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
import pytest_asyncio
import schemathesis
from aiohttp import web
from pydantic import BaseModel, Field

from dialkit.openapi import API_CONFIG, ApiConfig, ApiError, Routes

routes = Routes(tag="things")


class Thing(BaseModel):
    name: str = Field(min_length=1, max_length=20)
    size: int = Field(default=1, ge=1)
    tags: list[str] = Field(default_factory=list)
    note: str | None = None


class ThingOut(BaseModel):
    id: int
    name: str
    actor: str


class Listing(BaseModel):
    limit: int = Field(default=10, ge=1, le=100, description="at most this many")
    kind: Literal["big", "small"] | None = None
    after: int | None = None
    name: str | None = None
    tag: list[str] = Field(default_factory=list)
    state: list[Literal["a", "b"]] | None = None


@routes.post("/api/things", body=Thing, response=ThingOut, status=201, scope="write",
             summary="Make a thing")
async def make_thing(request: web.Request, body: Thing) -> ThingOut:
    """Makes a thing."""
    if body.name == "taken":
        raise ApiError(409, "a thing of that name exists", field="name")
    return ThingOut(id=7, name=body.name, actor=request["actor"])


@routes.get("/api/things", query=Listing, response=dict[str, Any], summary="List things")
async def list_things(request: web.Request, query: Listing) -> dict[str, Any]:
    return query.model_dump()


@routes.get("/api/things/{thing_id}", response=ThingOut, responses={404: "no such thing"})
async def get_thing(request: web.Request) -> ThingOut:
    raise ApiError(404, f"no thing {request.match_info['thing_id']}")


@routes.post("/api/things/{thing_id}/upload", raw_body=True, body_media_type="text/csv",
             response=dict[str, int], responses={200: {"description": "counted"}})
async def upload(request: web.Request) -> dict[str, int]:
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
    return {"bytes": total}


@routes.post("/api/things/{thing_id}/slow-upload", raw_body=True, body_media_type="text/csv",
             response=dict[str, int])
async def slow_upload(request: web.Request) -> dict[str, int]:
    """Takes 1.5 s over each chunk, as a handler writing to a busy database would."""
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        await asyncio.sleep(1.5)
    return {"bytes": total}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def things() -> AsyncIterator[str]:
    app = web.Application(client_max_size=64 * 1024)
    app[API_CONFIG] = ApiConfig(body_timeout_s=1.0, title="things")
    routes.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_valid_body_is_answered_with_the_response_model(things: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        got = await c.post("/api/things", json={"name": "box", "tags": ["a"]})
    assert got.status_code == 201
    assert got.headers["content-type"].startswith("application/json")
    assert got.json() == {"id": 7, "name": "box", "actor": "local"}


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"size": 2}, "name", "name: Field required"),
        ({"name": ""}, "name", "name: String should have at least 1 character"),
        ({"name": "box", "size": 0}, "size", "size: Input should be greater than or equal to 1"),
        ({"name": "box", "tags": ["a", 5]}, "tags[1]", "tags[1]: Input should be a valid string"),
        ({"name": "box", "note": "a\x00b"}, "note", "note: text must not contain NUL characters"),
    ],
)
async def test_an_invalid_body_is_a_400_naming_the_field(
    things: str, body: dict[str, Any], field: str, reason: str
) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        got = await c.post("/api/things", json=body)
    assert got.status_code == 400, got.text
    answer = got.json()
    assert answer["error"] == reason and answer["field"] == field


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "a JSON request body is required"),
        (b"{", "body is not valid JSON"),
        (b"[1]", "Input should be a valid dictionary"),
        (b'{"name": "\xff"}', "body is not UTF-8"),
        (b'{"name": NaN}', "name: Input should be a valid string"),
        (b"[" * 5000 + b"]" * 5000, "nested deeper"),
    ],
)
async def test_a_body_that_is_not_the_json_wanted_is_a_400(things: str, raw: bytes, reason: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        got = await c.post("/api/things", content=raw, headers={"Content-Type": "application/json"})
    assert got.status_code == 400, got.text
    assert reason in got.json()["error"]


async def test_a_handlers_api_error_keeps_its_status_reason_and_field(things: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        taken = await c.post("/api/things", json={"name": "taken"})
        missing = await c.get("/api/things/42")
    assert taken.status_code == 409 and taken.json() == {"error": "a thing of that name exists", "field": "name"}
    assert missing.status_code == 404 and missing.json() == {"error": "no thing 42"}


async def test_the_query_string_is_validated(things: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        ok = await c.get("/api/things", params=[("limit", "5"), ("tag", "a"), ("tag", "b"), ("kind", "big"),
                                                ("state", "b"), ("state", "a")])
        default = await c.get("/api/things")
        bad = await c.get("/api/things", params={"limit": "500"})
        wrong = await c.get("/api/things", params={"kind": "huge"})
    assert ok.status_code == 200
    assert ok.json() == {"limit": 5, "kind": "big", "tag": ["a", "b"], "state": ["b", "a"], "after": None,
                         "name": None}
    assert default.json() == {"limit": 10, "kind": None, "tag": [], "state": None, "after": None, "name": None}
    assert bad.status_code == 400 and bad.json()["field"] == "limit"
    assert bad.json()["error"] == "limit: Input should be less than or equal to 100"
    assert wrong.status_code == 400 and wrong.json()["field"] == "kind"


@pytest.mark.parametrize(
    ("path", "params", "field", "reason"),
    [
        ("/api/things", {"after": str(2**64)}, "after", "integer out of range (at most 64 bits)"),
        ("/api/things", {"name": "a\x00b"}, "name", "text must not contain NUL characters"),
        ("/api/things", {"tag": "\x00"}, "tag[0]", "text must not contain NUL characters"),
        ("/api/things/a%00b", {}, "thing_id", "text must not contain NUL characters"),
    ],
)
async def test_query_and_path_values_the_database_cannot_take_are_a_400(
    things: str, path: str, params: dict[str, str], field: str, reason: str
) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        got = await c.get(path, params=params)
    assert got.status_code == 400, got.text
    assert got.json() == {"error": f"{field}: {reason}", "field": field}


async def test_a_body_over_the_size_limit_is_a_413(things: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        got = await c.post("/api/things", json={"name": "x", "note": "y" * 100_000})
    assert got.status_code == 413 and "larger than" in got.json()["error"]


async def test_a_streamed_body_is_not_bound_by_the_size_limit_or_the_body_deadline(things: str) -> None:
    async def slow_chunks() -> AsyncIterator[bytes]:
        for _ in range(6):  # 6 x 0.3 s: longer than the 1 s body deadline, never idle 1 s
            yield b"x" * 50_000
            await asyncio.sleep(0.3)

    async with httpx.AsyncClient(base_url=things, timeout=20) as c:
        got = await c.post("/api/things/1/upload", content=slow_chunks(), headers={"Content-Type": "text/csv"})
    assert got.status_code == 200 and got.json() == {"bytes": 300_000}


async def test_a_handler_slower_than_the_body_timeout_is_not_cut_off(things: str) -> None:
    async with httpx.AsyncClient(base_url=things, timeout=20) as c:
        got = await c.post("/api/things/1/slow-upload", content=b"y" * 100_000, headers={"Content-Type": "text/csv"})
    assert got.status_code == 200 and got.json() == {"bytes": 100_000}


async def test_a_streamed_body_that_stalls_gets_408_and_the_connection_closes(things: str) -> None:
    port = int(things.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/things/1/upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                 b"Content-Length: 1000\r\n\r\nphone,name\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 20)  # until the server closes
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"no request body data for 1 s" in answer


# ---- the document and the UI ----------------------------------------------------------------


async def _document(base: str, path: str = "/openapi.json") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as c:
        got = await c.get(path)
    assert got.status_code == 200
    return dict(got.json())


def _has_key(node: Any, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_has_key(v, key) for v in node)
    return False


async def test_the_document_is_valid_openapi_31_with_components(things: str) -> None:
    doc = await _document(things)
    schemathesis.openapi.from_dict(doc).validate()
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "things"
    assert not _has_key(doc, "$defs")
    schemas = doc["components"]["schemas"]
    assert {"Thing", "ThingOut", "ErrorBody"} <= set(schemas)
    make = doc["paths"]["/api/things"]["post"]
    assert make["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    assert set(make["responses"]) >= {"201", "400", "401", "403", "408", "413"}
    assert make["security"] == [{"apiKey": []}] and make["x-scope"] == "write"
    assert make["summary"] == "Make a thing" and make["description"].startswith("Makes a thing.")
    listing = {p["name"]: p for p in doc["paths"]["/api/things"]["get"]["parameters"]}
    assert listing["limit"]["in"] == "query" and listing["limit"]["description"] == "at most this many"
    assert listing["tag"]["schema"]["type"] == "array"
    one = doc["paths"]["/api/things/{thing_id}"]["get"]
    assert one["parameters"] == [{"name": "thing_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert one["responses"]["404"]["description"] == "no such thing"
    stream = doc["paths"]["/api/things/{thing_id}/upload"]["post"]
    assert list(stream["requestBody"]["content"]) == ["text/csv"]


async def test_swagger_ui_reads_a_valid_30_rendering(things: str) -> None:
    doc = await _document(things, "/docs/openapi-3.0.json")
    assert doc["openapi"] == "3.0.3"
    schemathesis.openapi.from_dict(doc).validate()
    note = doc["components"]["schemas"]["Thing"]["properties"]["note"]
    assert note["nullable"] is True and note["type"] == "string"


async def test_docs_page_and_its_assets_are_served_locally(things: str) -> None:
    async with httpx.AsyncClient(base_url=things) as c:
        page = await c.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere
        for src in ("docs/static/swagger-ui-bundle.js", "docs/static/swagger-ui-standalone-preset.js",
                    "docs/static/swagger-ui.css", "docs/init.js"):
            assert src in page.text
            asset = await c.get(f"/{src}")
            assert asset.status_code == 200 and len(asset.content) > 100, src
        init = await c.get("/docs/init.js")
        assert "docs/openapi-3.0.json" in init.text
        bundle = await c.get("/docs/static/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith("application/javascript")
        assert b"SwaggerUIBundle" in bundle.content
        assert (await c.get("/docs/static/index.j2")).status_code == 404
        assert (await c.get("/docs/static/..%2F__init__.py")).status_code == 404


def test_installing_a_group_twice_adds_nothing() -> None:
    app = web.Application()
    routes.install(app)
    count = len(app.router.routes())
    routes.install(app)
    assert len(app.router.routes()) == count


def test_a_raw_body_route_cannot_declare_a_body() -> None:
    with pytest.raises(ValueError, match="raw_body"):
        Routes().post("/x", body=Thing, raw_body=True)


def test_default_scopes_follow_the_method() -> None:
    r = Routes()
    for method in ("get", "post", "put", "patch", "delete"):
        getattr(r, method)("/x")(list_things)
    r.get("/open", scope="public")(list_things)
    assert [route.scope for route in r.routes] == ["read", "write", "write", "write", "write", None]
    assert json.dumps([route.path for route in r.routes])


# ---- the server's own document ------------------------------------------------------------


async def test_the_servers_document_describes_the_call_api(light_server: Any) -> None:
    doc = await _document(light_server.http)
    schemathesis.openapi.from_dict(doc).validate()
    schemathesis.openapi.from_dict(await _document(light_server.http, "/docs/openapi-3.0.json")).validate()
    paths = doc["paths"]
    assert {"/api/calls", "/api/calls/live", "/api/calls/{call_id}", "/api/calls/{call_id}/transcript"} <= set(paths)
    create = paths["/api/calls"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/CreateCall"}
    assert create["x-scope"] == "write" and paths["/api/calls/live"]["get"]["x-scope"] == "read"
    carrier = doc["components"]["schemas"]["CreateCall"]["properties"]["carrier"]
    assert carrier["enum"] == ["twilio", "exotel"]
    transcript = paths["/api/calls/{call_id}/transcript"]["get"]
    assert set(transcript["responses"]["200"]["content"]) == {"application/json", "text/plain", "text/csv"}
    assert not any(p.startswith(("/media", "/carriers", "/webhooks", "/health")) for p in paths)
