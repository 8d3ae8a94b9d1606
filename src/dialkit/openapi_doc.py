"""The OpenAPI 3.1 document of the installed routes (pydantic's JSON Schemas, their
definitions under components/schemas), and a 3.0 rendering of it for Swagger UI 4, which
reads no 3.1 document."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

if TYPE_CHECKING:
    from dialkit.openapi import Route

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "apiKey"
_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REASONS = {
    400: "invalid request (the field and the reason are named)",
    401: "no API key, or an unknown or revoked one",
    403: "the API key's scope does not allow this",
    404: "not found",
    408: "the request body did not arrive in time",
    413: "the request body is too large",
}


def _operation_id(route: Route, taken: set[str]) -> str:
    base = getattr(route.handler, "__name__", "") or re.sub(r"\W+", "_", f"{route.method}_{route.path}")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name


def _is_type(spec: Any) -> bool:
    return not isinstance(spec, (str, dict)) and spec is not None


def build_document(routes: Sequence[Route], title: str, version: str) -> dict[str, Any]:
    from dialkit.openapi import ErrorBody

    wanted: list[tuple[Any, JsonSchemaMode, TypeAdapter[Any]]] = [("error", "serialization", TypeAdapter(ErrorBody))]
    for i, route in enumerate(routes):
        if route.body is not None:
            wanted.append(((i, "body"), "validation", TypeAdapter(route.body)))
        if route.query is not None:
            wanted.append(((i, "query"), "validation", TypeAdapter(route.query)))
        if route.response is not None:
            wanted.append(((i, "response"), "serialization", TypeAdapter(route.response)))
        for code, spec in route.responses.items():
            if _is_type(spec):
                wanted.append(((i, code), "serialization", TypeAdapter(spec)))
            elif isinstance(spec, dict):
                for media, entry in spec.get("content", {}).items():
                    if _is_type(entry.get("schema")):
                        wanted.append(((i, code, media), "serialization", TypeAdapter(entry["schema"])))
    found, top = TypeAdapter.json_schemas(wanted, ref_template=REF)
    components: dict[str, Any] = dict(top.get("$defs", {}))
    schema = {key: value for (key, _mode), value in found.items()}
    error_ref = schema["error"]
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    query_models: set[str] = set()
    for i, route in enumerate(routes):
        template = _PARAM.sub(r"{\1}", route.path)
        op: dict[str, Any] = {"operationId": _operation_id(route, taken)}
        if route.tag:
            op["tags"] = [route.tag]
        if route.summary:
            op["summary"] = route.summary
        doc = (route.handler.__doc__ or "").strip()
        if route.scope is not None:
            doc = f"{doc}\n\nNeeds an API key of scope `{route.scope}` or above.".strip()
        if doc:
            op["description"] = doc
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PARAM.findall(route.path)]
        if route.query is not None:
            params.extend(_query_parameters(schema[(i, "query")], components))
            query_models.add(schema[(i, "query")]["$ref"].rsplit("/", 1)[-1])
        if params:
            op["parameters"] = params
        if route.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema[(i, "body")]}}}
        elif route.raw_body:
            op["requestBody"] = {"required": True, "content": {route.body_media_type: {"schema": {"type": "string"}}}}
        responses: dict[str, Any] = {}
        main: dict[str, Any] = {"description": route.summary or "done"}
        if route.response is not None:
            main["content"] = {"application/json": {"schema": schema[(i, "response")]}}
        responses[str(route.status)] = main
        errors = set()
        if params or route.body is not None or route.raw_body:
            errors.add(400)
        if _PARAM.search(route.path):
            errors.add(404)
        if route.scope is not None:
            errors |= {401, 403}
        if route.method in ("POST", "PUT", "PATCH"):
            errors |= {408, 413}
        for code in sorted(errors):
            responses[str(code)] = _error_response(_REASONS[code], error_ref)
        for code, spec in route.responses.items():
            if isinstance(spec, dict):
                responses[str(code)] = _typed(spec, lambda media, i=i, code=code: schema[(i, code, media)])
            elif isinstance(spec, str):
                responses[str(code)] = _error_response(spec, error_ref) if code >= 400 else {"description": spec}
            else:
                responses[str(code)] = {"description": _REASONS.get(code, "answer"),
                                        "content": {"application/json": {"schema": schema[(i, code)]}}}
        op["responses"] = responses
        op["security"] = [{SECURITY_SCHEME: []}] if route.scope is not None else []
        if route.scope is not None:
            op["x-scope"] = route.scope
        paths.setdefault(template, {})[route.method.lower()] = op
    _drop_unreferenced(components, paths, query_models)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "an API key (`dialkit apikey create`, dk_…) or DIALKIT_API_KEY, "
                               "sent as `Authorization: Bearer <key>`",
            }},
        },
    }


def _typed(spec: dict[str, Any], schema_of: Any) -> dict[str, Any]:
    """An OpenAPI response object whose content schemas may be pydantic types."""
    content = {
        media: {**entry, "schema": schema_of(media)} if _is_type(entry.get("schema")) else entry
        for media, entry in spec.get("content", {}).items()
    }
    return {**spec, "content": content} if content else dict(spec)


def _drop_unreferenced(components: dict[str, Any], paths: dict[str, Any], names: set[str]) -> None:
    """Query models are spelled out as parameters: their schema goes unless something
    else (a body, a response) refers to it."""
    for name in sorted(names):
        rest = {k: v for k, v in components.items() if k != name}
        if f'"{REF.format(model=name)}"' not in json.dumps([paths, rest]):
            components.pop(name)


def _error_response(description: str, error_ref: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": error_ref}}}


def _query_parameters(ref: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    model = components[name]
    required = set(model.get("required", ()))
    params = []
    for field, prop in model.get("properties", {}).items():
        prop = dict(prop)
        param: dict[str, Any] = {"name": field, "in": "query", "required": field in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        param["schema"] = prop
        params.append(param)
    return params


# ---- for Swagger UI 4 (OpenAPI 3.0 only) ---------------------------------------------------


def as_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The same document in OpenAPI 3.0 terms, for display: nullable for `null` in a
    type or anyOf, enum for const, example for examples, boolean exclusive bounds."""
    converted = _to_30(document)
    converted["openapi"] = "3.0.3"
    return converted


def _to_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_30(value) for key, value in node.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):
        rest = [k for k in kinds if k != "null"]
        if len(rest) == 1:
            out["type"] = rest[0]
        else:
            del out["type"]
        if "null" in kinds:
            out["nullable"] = True
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            out["nullable"] = True
            if len(rest) == 1:
                del out[key]
                only = rest[0]
                if "$ref" in only:
                    out["allOf"] = [only]
                else:
                    out.update(only)
            else:
                out[key] = rest
    if "const" in out:
        out["enum"] = [out.pop("const")]
    examples = out.get("examples")
    if isinstance(examples, list):  # a schema's examples (a media type's is a mapping)
        del out["examples"]
        if examples:
            out["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), (int, float)) and not isinstance(out.get(bound), bool):
            out[plain] = out[bound]
            out[bound] = True
    return out

