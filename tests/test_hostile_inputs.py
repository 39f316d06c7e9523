"""Hostile inputs, one field at a time, for every operation of the OpenAPI document.

Each operation first gets a valid request (path parameters naming real items made through the API, a body
built from its schema) that must succeed. Then every path parameter, query parameter, header, credential
and body field it declares (nested ones too) is replaced, one at a time, by values that no documented
format produces: document-path characters, lone surrogates, NUL, bidirectional marks, 5 000 characters,
naive and out-of-range moments, huge numbers, NaN, wrong JSON types, deep nesting, duplicate keys, a valid
value with a bad character appended; and the whole body by what is not JSON, too large, or of another
media type. Whatever is sent: never a 5xx, every 4xx is a problem+json document, a refused request writes
nothing, and what no valid request carries (a malformed id, a control character in stored text) is
refused.

"Writes nothing" holds the tables to exactly what they held before the request. Each operation starts
from empty tables, scanned once its items exist; every successful write call (DynamoDB or Cognito) is
recorded as it is made, and each item a request wrote is read back at once: a refused request must leave
each of them as it was (an idempotency record made and released within it is fine), and what the last
request left is what the next one starts from. A scan at the end must find exactly that, so no write
escaped the record. (A full scan before and after each of several thousand requests would cost minutes
for what the record pins to the request.)

A new operation is covered as it appears; one whose path parameter has no entry in PATH_PARAMETERS, or
whose valid request does not succeed, fails here until it gets one.
"""

from __future__ import annotations

import json
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from local.resources import (
    DEMO_PASSWORD,
    LocalResources,
    aws_client,
    create_idempotency_table,
    create_user,
)

import main
from tests.aws_calls import AwsCall, intercepting_aws_calls
from tests.data.helpers import DATA_TEST_ENVIRONMENT, PROBLEM, User, bearer, data_test_environment

PROBLEM_MEMBERS = {"type", "title", "status", "detail", "instance", "request_id"}
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
RATE_LIMIT_PREFIX = "RATELIMIT#"
# The key attributes of each table, as the stand-in describes them (filled in by Tables).
KEY_ATTRIBUTES: dict[str, tuple[str, ...]] = {}
# The request body limit (src/content_type.py), and a body just over it.
MAX_BODY_BYTES = 64 * 1024
PLACEHOLDER = "__hostile_placeholder_3c9e__"
TRANSIENT_RETRIES = 2


# --------------------------------------------------------------------------------------------------------
# The values


@dataclass(frozen=True)
class Hostile:
    """One hostile value: as raw JSON text (a body field) and, when it has one, as text (a path segment,
    a query parameter, a header).

    `malformed`: no id, token, tag, cursor or ETag ever looks like it (a moment or a number written as
    text may well be a valid key or tag). `unprintable`: it holds what no stored text may hold (a control
    character, half a surrogate pair, a bidirectional override), so every body field refuses it."""

    label: str
    json_text: str
    text: str | None
    malformed: bool = True
    unprintable: bool = False


BIDI_OVERRIDES = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _string(label: str, value: str, *, malformed: bool = True) -> Hostile:
    unprintable = any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_OVERRIDES for c in value)
    # json.dumps escapes a lone surrogate as "\ud800", as a client writing JSON by hand would send it.
    return Hostile(label, json.dumps(value), value, malformed, unprintable)


# Appended to a valid value: a pattern must refuse the value even when all the rest of it is right.
SUFFIXES = [
    _string("valid + open bracket", "["),
    *(_string(f"valid + {label}", text) for label, text in (("NUL", "\u0000"), ("override", "\u202e"))),
]


def _nested(opening: str, closing: str, depth: int) -> str:
    return opening * depth + closing * depth


STRINGS = [
    _string("empty", ""),
    _string("open bracket", "["),
    _string("close bracket", "]"),
    _string("dot", "."),
    _string("hash", "#"),
    _string("x[", "x["),
    _string("x]y", "x]y"),
    _string("document path", "roles.x[0].#y"),
    _string("slash", "x/../y"),
    _string("lone high surrogate", "\ud800"),
    _string("lone low surrogate", "x\udfffy"),
    _string("NUL", "\u0000"),
    _string("NUL inside", "x\u0000y"),
    _string("right-to-left mark", "\u200fabc"),
    _string("right-to-left override", "abc\u202edef"),
    _string("5000 characters", "x" * 5000),
    _string("naive moment", "2027-01-01T00:00:00", malformed=False),
    _string("date for a moment", "2027-01-01", malformed=False),
    _string("year 1", "0001-01-01T00:00:00Z", malformed=False),
    _string("year 9999", "9999-12-31T23:59:59Z", malformed=False),
]
# Numbers where only text can go, for numeric parameters (a page's limit); a body sends JSON numbers.
NUMBERS_AS_TEXT = [
    _string("2^63 as text", str(2**63), malformed=False),
    _string("-2^63-1 as text", str(-(2**63) - 1), malformed=False),
    _string("1e308 as text", "1e308", malformed=False),
    _string("NaN as text", "NaN", malformed=False),
    _string("Infinity as text", "Infinity", malformed=False),
]
# Only a JSON body can carry these: numbers, the literals Python's parser accepts beyond JSON, other types.
JSON_ONLY = [
    Hostile("2^63", str(2**63), None),
    Hostile("-2^63-1", str(-(2**63) - 1), None),
    Hostile("1e308", "1e308", None),
    Hostile("1e400", "1e400", None),
    Hostile("NaN literal", "NaN", None),
    Hostile("Infinity literal", "Infinity", None),
    Hostile("-Infinity literal", "-Infinity", None),
    Hostile("null", "null", None),
    Hostile("true", "true", None),
    Hostile("zero", "0", None),
    Hostile("empty array", "[]", None),
    Hostile("empty object", "{}", None),
    Hostile("array of strings", '["x[", "x]y"]', None),
    Hostile("object with a hostile key", '{"x[": 1, "a.b": 2}', None),
    Hostile("arrays 100 deep", _nested("[", "]", 100), None),
    Hostile("objects 100 deep", '{"a":' * 100 + "1" + "}" * 100, None),
]
BODY_VALUES = STRINGS + JSON_ONLY
# Credentials reach one shared dependency on every route: one value of each kind of character trouble.
CREDENTIAL_VALUES = [
    value
    for value in STRINGS
    if value.label
    in {"empty", "x[", "lone high surrogate", "NUL inside", "right-to-left override", "5000 characters"}
]


# --------------------------------------------------------------------------------------------------------
# The requests


@dataclass
class Call:
    """One request, as raw as a client can make it."""

    method: str
    template: str
    path: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None
    # Sent in chunks without a Content-Length (Transfer-Encoding: chunked).
    chunked: bool = False

    def url(self) -> str:
        path = self.template
        for name, value in self.path.items():
            path = path.replace(f"{{{name}}}", _percent(value))
        if self.query:
            path += "?" + "&".join(f"{_percent(k)}={_percent(v)}" for k, v in self.query.items())
        return path

    def raw_headers(self) -> dict[bytes, bytes]:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        # Bytes as they would come off the wire; a lone surrogate becomes its (invalid) UTF-8 encoding.
        return {name.encode(): value.encode("utf-8", "surrogatepass") for name, value in headers.items()}

    def send(self, client: TestClient) -> Any:
        body = self.body or b""
        content = iter([body[i : i + 8192] for i in range(0, len(body), 8192)]) if self.chunked else self.body
        return client.request(
            self.method, self.url(), headers=self.raw_headers(), content=content, follow_redirects=False
        )


def _percent(value: str) -> str:
    # Everything escaped, dots included: a bare "." segment would be folded away before it left the client.
    return quote(value.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


@dataclass(frozen=True)
class Mutation:
    """One field of a valid request replaced by a hostile value."""

    where: str  # path, query, header, credential, body or whole body
    name: str  # the parameter, header or body field (a.b[0]); empty for the whole body
    label: str  # what the value is
    value: str | bytes  # text for a parameter or header, raw JSON text for a body field, a whole body
    # Whether no valid request can carry it (a malformed id, token or header; a control character in
    # stored text): then it must be refused.
    never_valid: bool = False
    at: tuple[str | int, ...] = ()
    duplicate_of: str | None = None  # a body field: the valid JSON value sent first under the same key
    content_type: str | None = "application/json"  # a whole body
    chunked: bool = False  # a whole body

    @property
    def description(self) -> str:
        return f"{self.where} {self.name} = {self.label}".replace("  ", " ")

    def apply(self, call: Call) -> Call:
        value = self.value
        if self.where == "whole body":
            assert isinstance(value, bytes)
            return replace(call, body=value, content_type=self.content_type, chunked=self.chunked)
        assert isinstance(value, str)
        if self.where == "path":
            return replace(call, path={**call.path, self.name: value})
        if self.where == "query":
            return replace(call, query={**call.query, self.name: value})
        if self.where == "header":
            return replace(call, headers={**call.headers, self.name: value})
        if self.where == "credential":
            return replace(call, headers={self.name: value})
        body = _body_with(call, self.at, value, duplicate_of=self.duplicate_of)
        return replace(call, body=body)


# --------------------------------------------------------------------------------------------------------
# The OpenAPI document: operations, their parameters and body fields


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


DOCUMENT = main.app.openapi()
OPERATIONS = _operations(DOCUMENT)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = DOCUMENT["components"]["schemas"][name]
    return schema


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a field's value, without the `null` an optional field may also take."""
    schema = _resolve(schema)
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            choices = [_resolve(c) for c in schema[combinator] if _resolve(c).get("type") != "null"]
            # Examples and defaults sit beside the choices, not inside them.
            outer = {key: value for key, value in schema.items() if key != combinator}
            return {**outer, **choices[0]}
    return schema


def _request_body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return None
    assert set(content) == {"application/json"}, f"request bodies are JSON only: {set(content)}"
    return _resolve(content["application/json"]["schema"])


Path = tuple[str | int, ...]


def _body_fields(schema: dict[str, Any], at: Path = ()) -> Iterator[Path]:
    """Every field of a body, nested objects' fields and array elements included."""
    schema = _non_null(schema)
    if schema.get("type") == "object" or "properties" in schema:
        for name, child in schema.get("properties", {}).items():
            yield (*at, name)
            yield from _body_fields(child, (*at, name))
    elif schema.get("type") == "array":
        yield (*at, 0)
        yield from _body_fields(schema.get("items", {}), (*at, 0))


def _security_headers(operation: dict[str, Any]) -> list[str]:
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    headers = []
    for name in sorted(schemes):
        scheme = DOCUMENT["components"]["securitySchemes"][name]
        headers.append("Authorization" if scheme["type"] == "http" else scheme["name"])
    return headers


# --------------------------------------------------------------------------------------------------------
# Valid values: real items, made through the API


@dataclass
class World:
    """The people of this module and the items each operation's valid request names."""

    client: TestClient
    resources: LocalResources
    admin: User
    member: User
    invitee: User
    newcomer: User

    def post(self, path: str, body: dict[str, Any], user: User | None = None) -> dict[str, Any]:
        response = self.client.post(path, headers=bearer(user or self.admin), json=body)
        assert response.status_code == 201, f"{path}: {response.text}"
        created: dict[str, Any] = response.json()
        return created

    def directory_user(self) -> str:
        """A new user of the pool (admins act on them); their directory username."""
        email = f"target-{uuid.uuid4().hex}@example.com"
        create_user(self.resources.endpoint, self.resources.user_pool_id, email, DEMO_PASSWORD, ("user",))
        return email


@dataclass
class Items:
    """The items one request names, made on first use (a fresh set for each request that may use them up)."""

    world: World
    made: dict[str, Any] = field(default_factory=dict)

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self.made:
            self.made[name] = make()
        return self.made[name]

    def project(self) -> str:
        project = self._once("project", lambda: self.world.post("/projects", {"name": "hostile inputs"}))
        return str(project["id"])

    def task(self) -> str:
        project = self.project()
        task = self._once("task", lambda: self.world.post(f"/projects/{project}/tasks", {"title": "t"}))
        return str(task["id"])

    def member(self) -> str:
        project, member = self.project(), self.world.member
        self._once(
            "member",
            lambda: self.world.post(
                f"/projects/{project}/members", {"subject": member["sub"], "role": "editor"}
            ),
        )
        return member["sub"]

    def invitation(self) -> str:
        project, invitee = self.project(), self.world.invitee
        invitation = self._once(
            "invitation",
            lambda: self.world.post(
                f"/projects/{project}/invitations", {"email": invitee["email"], "role": "viewer"}
            ),
        )
        return str(invitation["id"])

    def api_key(self) -> str:
        key = self._once(
            "api_key", lambda: self.world.post("/api-keys", {"name": "k", "scopes": ["stratus/read"]})
        )
        return str(key["id"])

    def directory_user(self) -> str:
        return str(self._once("directory_user", self.world.directory_user))


# How to make a valid value for each path parameter name the API uses.
PATH_PARAMETERS: dict[str, Callable[[Items], str]] = {
    "project_id": Items.project,
    "task_id": Items.task,
    "member_id": Items.member,
    "invitation_id": Items.invitation,
    "key_id": Items.api_key,
    "user_id": Items.directory_user,
    "group": lambda items: "user",
}
# Body fields whose valid value must name something real; the others come from their schema.
BODY_FIELDS: dict[str, Callable[[Items], Any]] = {
    # Someone not yet a member of the request's (fresh) project.
    "subject": lambda items: items.world.newcomer["sub"],
    # The caller owns the request's project.
    "assignee": lambda items: items.world.admin["sub"],
    "email": lambda items: f"invitee-{uuid.uuid4().hex}@example.com",
}
# Who makes each operation's requests, when not the admin who owns every item.
CALLERS: dict[str, str] = {
    "invitations-accept_invitation": "invitee",
    "invitations-decline_invitation": "invitee",
    "invitations-my_invitations": "invitee",
}


def _schema_value(schema: dict[str, Any]) -> Any:
    schema = _non_null(schema)
    # Moments and dates relative to today: a documented example would one day lie in the past.
    kind, format_ = schema.get("type"), schema.get("format")
    if format_ == "date-time":
        return (datetime.now(UTC) + timedelta(days=30)).isoformat()
    if format_ == "date":
        return (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    for source in ("examples", "enum"):
        if schema.get(source):
            return schema[source][0]
    if "example" in schema:
        return schema["example"]
    if "default" in schema and schema["default"] not in (None, "", [], {}):
        return schema["default"]
    if kind == "string":
        return "valid-" + uuid.uuid4().hex[:8]
    if kind == "boolean":
        return False
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "array":
        return [_schema_value(schema.get("items", {}))]
    if kind == "object" or "properties" in schema:
        return {}
    raise AssertionError(f"no valid value for the schema {schema}")


def _valid_body(schema: dict[str, Any], items: Items) -> Any:
    """A value for every field of the schema (optional ones too), so that every field can be mutated."""
    schema = _non_null(schema)
    if "properties" in schema:
        return {
            name: BODY_FIELDS[name](items) if name in BODY_FIELDS else _valid_body(child, items)
            for name, child in schema["properties"].items()
        }
    if schema.get("type") == "array" and "properties" in _non_null(schema.get("items", {})):
        return [_valid_body(schema["items"], items)]
    return _schema_value(schema)


def _valid_call(method: str, template: str, operation: dict[str, Any], world: World, items: Items) -> Call:
    path: dict[str, str] = {}
    query: dict[str, str] = {}
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter["in"]
        if where == "path":
            assert name in PATH_PARAMETERS, (
                f"{method} {template}: no valid value for the path parameter {name!r}; add how to make "
                "one to PATH_PARAMETERS"
            )
            path[name] = PATH_PARAMETERS[name](items)
        elif where == "query" and parameter.get("required"):
            query[name] = str(_schema_value(parameter["schema"]))
    caller = getattr(world, CALLERS.get(operation["operationId"], "admin"))
    call = Call(method, template, path, query, bearer(caller))
    schema = _request_body_schema(operation)
    if schema is not None:
        call.body = json.dumps(_valid_body(schema, items)).encode()
        call.content_type = "application/json"
    return call


# --------------------------------------------------------------------------------------------------------
# Mutations


def _body_with(call: Call, at: Path, raw: str, *, duplicate_of: str | None = None) -> bytes:
    """The call's body with the field at `at` holding `raw` JSON text (after `duplicate_of`, the same key
    holding another value first, when given)."""
    assert call.body is not None
    document = json.loads(call.body)
    parent = document
    for step in at[:-1]:
        parent = parent[step]
    leaf = at[-1]
    parent[leaf] = PLACEHOLDER
    text = json.dumps(document)
    replacement = raw if duplicate_of is None else f"{duplicate_of}, {json.dumps(leaf)}: {raw}"
    assert text.count(json.dumps(PLACEHOLDER)) == 1
    return text.replace(json.dumps(PLACEHOLDER), replacement).encode("utf-8", "surrogatepass")


def _field_name(at: Path) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in at).lstrip(".")


def _value_at(body: bytes, at: Path) -> Any:
    value = json.loads(body)
    for step in at:
        value = value[step]
    return value


def _whole_body_mutations(call: Call, has_body: bool) -> list[Mutation]:
    def body(
        label: str, content: bytes, content_type: str | None = "application/json", *, refused: bool = True
    ) -> Mutation:
        return Mutation("whole body", "", label, content, refused, content_type=content_type)

    # What the body guard refuses whatever the operation: every POST, PUT and PATCH gets these.
    oversized = json.dumps({"name": "x" * (MAX_BODY_BYTES + 1)}).encode()
    refused_anywhere = [
        body("over 64 KiB", oversized),
        Mutation("whole body", "", "over 64 KiB, chunked", oversized, True, chunked=True),
        body("text/plain", b'{"name": "x"}', "text/plain"),
        body("form", b"name=x", "application/x-www-form-urlencoded"),
        body("multipart", b"--b\r\n\r\nx\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        body("no content type", b'{"name": "x"}', None),
        body("arrays 100 deep", _nested("[", "]", 100).encode()),
        body("objects 100 deep", ('{"a":' * 100 + "1" + "}" * 100).encode()),
        body("lone surrogate in a key", b'{"\\ud800": 1}'),
    ]
    if not has_body:
        return refused_anywhere
    valid = call.body or b"{}"
    document = json.loads(valid)
    first_key = json.dumps(next(iter(document), "name")).encode()
    with_surrogate = json.dumps({**document, next(iter(document), "name"): "\ud800"})
    return [
        *refused_anywhere,
        body("empty", b""),
        body("not JSON", b"{'name': x"),
        body("truncated", valid[:-1]),
        body("invalid UTF-8", b'{"name": "\xff\xfe"}'),
        body("UTF-8 BOM", b"\xef\xbb\xbf" + valid, refused=False),
        # JSON between systems is UTF-8 (RFC 8259); Python's parser also reads UTF-16 and UTF-32, which
        # a filter in front (a WAF reading UTF-8) would not.
        body("UTF-16", valid.decode().encode("utf-16-le")),
        body("UTF-32", valid.decode().encode("utf-32")),
        body("UTF-16, lone surrogate escape", with_surrogate.encode("utf-16-le")),
        body("JSON null", b"null"),
        body("JSON array", b"[]"),
        body("JSON string", b'"x"'),
        body("JSON number", b"1e308"),
        body("NaN", b"NaN"),
        body("unknown field", valid[:-1] + b', "x[": 1}'),
        body("NUL key", valid[:-1] + b', "\\u0000": 1}'),
        body("duplicate key, hostile last", valid[:-1] + b", " + first_key + b': "x\\u0000"}'),
        # The last of duplicate keys counts, as in most JSON parsers; that one is valid here.
        body(
            "duplicate key, hostile first",
            b"{" + first_key + b': "x\\u0000", ' + valid[1:],
            refused=False,
        ),
    ]


def _parameter_mutations(call: Call, parameter: dict[str, Any]) -> list[Mutation]:
    name, where = parameter["name"], parameter["in"]
    assert where in ("path", "query", "header"), f"parameters in {where} are not covered here"
    numeric = _non_null(parameter["schema"]).get("type") in ("integer", "number")
    valid = {**call.path, **call.query}.get(name) or str(_schema_value(parameter["schema"]))
    suffixed = [replace(suffix, text=valid + (suffix.text or "")) for suffix in SUFFIXES]
    values = STRINGS + (NUMBERS_AS_TEXT if numeric else []) + suffixed
    return [
        Mutation(where, name, value.label, value.text or "", never_valid=value.malformed) for value in values
    ]


def _credential_mutations(operation: dict[str, Any]) -> list[Mutation]:
    mutations = []
    for header in _security_headers(operation):
        for value in CREDENTIAL_VALUES:
            text = value.text or ""
            credential = f"Bearer {text}" if header == "Authorization" else text
            mutations.append(Mutation("credential", header, value.label, credential, never_valid=True))
    return mutations


def _body_field_mutations(call: Call, at: Path) -> list[Mutation]:
    name, current = _field_name(at), _value_at(call.body or b"{}", at)
    suffixed = (
        [replace(suffix, json_text=json.dumps(current + (suffix.text or ""))) for suffix in SUFFIXES]
        if isinstance(current, str)
        else []
    )
    mutations = [
        Mutation("body", name, value.label, value.json_text, never_valid=value.unprintable, at=at)
        for value in BODY_VALUES + suffixed
    ]
    if isinstance(at[-1], str):
        valid, hostile = json.dumps(current), '"x\\u0000"'
        mutations += [
            Mutation("body", name, "duplicate key, hostile last", hostile, True, at=at, duplicate_of=valid),
            Mutation("body", name, "duplicate key, hostile first", valid, at=at, duplicate_of=hostile),
        ]
    return mutations


def _mutations(call: Call, operation: dict[str, Any]) -> list[Mutation]:
    mutations = [
        mutation
        for parameter in operation.get("parameters", [])
        for mutation in _parameter_mutations(call, parameter)
    ]
    mutations += _credential_mutations(operation)
    schema = _request_body_schema(operation)
    if schema is not None:
        for at in _body_fields(schema):
            mutations += _body_field_mutations(call, at)
    if call.method in ("POST", "PUT", "PATCH"):
        mutations += _whole_body_mutations(call, schema is not None)
    return mutations


# --------------------------------------------------------------------------------------------------------
# What was written


WRITE_OPERATIONS = {
    "dynamodb": {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"},
}
# Cognito calls that change nothing; every other Cognito call of a refused request counts as a write.
COGNITO_READS = {
    "AdminGetUser",
    "AdminListGroupsForUser",
    "ListUsers",
    "GetUser",
    "DescribeUserPool",
    "InitiateAuth",
}

ItemKey = tuple[str, tuple[tuple[str, str], ...]]


def _item_key(table: str, attributes: dict[str, Any]) -> ItemKey:
    names = KEY_ATTRIBUTES.get(table) or tuple(sorted(attributes))
    return table, tuple((name, json.dumps(attributes[name])) for name in names)


def _is_counter(key: ItemKey) -> bool:
    return any(name == "pk" and RATE_LIMIT_PREFIX in value for name, value in key[1])


def _written_keys(operation: str, params: dict[str, Any]) -> list[ItemKey]:
    if operation == "PutItem":
        return [_item_key(params["TableName"], params["Item"])]
    if operation in ("UpdateItem", "DeleteItem"):
        return [_item_key(params["TableName"], params["Key"])]
    if operation == "TransactWriteItems":
        keys = []
        for entry in params["TransactItems"]:
            for kind, action in entry.items():
                if kind in ("Put", "Update", "Delete"):
                    keys.append(_item_key(action["TableName"], action.get("Item") or action["Key"]))
        return keys
    if operation == "BatchWriteItem":
        return [
            _item_key(table, request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"])
            for table, requests in params["RequestItems"].items()
            for request in requests
        ]
    return []


@dataclass
class WriteLog:
    """Every successful write made through botocore, the app's and this module's: DynamoDB item keys and
    Cognito operation names, in order."""

    items: list[ItemKey] = field(default_factory=list)
    directory: list[str] = field(default_factory=list)

    def record(self, call: AwsCall) -> Any:
        result = call.proceed()  # a refused call (an unmet condition) wrote nothing
        if call.service == "dynamodb" and call.operation in WRITE_OPERATIONS["dynamodb"]:
            keys = [key for key in _written_keys(call.operation, call.params) if not _is_counter(key)]
            self.items.extend(keys)
        elif call.service == "cognito-idp" and call.operation not in COGNITO_READS:
            self.directory.append(call.operation)
        return result

    def mark(self) -> tuple[int, int]:
        return len(self.items), len(self.directory)

    def items_since(self, mark: tuple[int, int]) -> set[ItemKey]:
        return set(self.items[mark[0] :])

    def directory_since(self, mark: tuple[int, int]) -> list[str]:
        return self.directory[mark[1] :]


Snapshot = dict[ItemKey, dict[str, Any]]


class Tables:
    """The module's two tables as this test sees them: the app's (rate-limit counters aside) and the
    idempotency records."""

    def __init__(self, resources: LocalResources) -> None:
        self.endpoint = resources.endpoint
        self.dynamodb = aws_client("dynamodb", resources.endpoint)
        self.names = (resources.table_name, resources.idempotency_table_name)
        for table in self.names:
            schema = self.dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
            KEY_ATTRIBUTES[table] = tuple(key["AttributeName"] for key in schema)

    def scan(self) -> Snapshot:
        items: Snapshot = {}
        for table in self.names:
            pages = self.dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
            for page in pages:
                for item in page["Items"]:
                    key = _item_key(table, item)
                    if not _is_counter(key):
                        items[key] = item
        return items

    def read(self, keys: set[ItemKey]) -> Snapshot:
        """The items at `keys` now (absent ones left out), read consistently."""
        found: Snapshot = {}
        wanted = sorted(keys)
        for start in range(0, len(wanted), 100):
            requests: dict[str, Any] = {}
            for table, key in wanted[start : start + 100]:
                entry = requests.setdefault(table, {"Keys": [], "ConsistentRead": True})
                entry["Keys"].append({name: json.loads(value) for name, value in key})
            while requests:
                response = self.dynamodb.batch_get_item(RequestItems=requests)
                for table, items in response["Responses"].items():
                    found.update({_item_key(table, item): item for item in items})
                requests = response.get("UnprocessedKeys") or {}
        return found

    def recreate(self) -> None:
        """Empty tables, made anew from the same definitions: each operation starts from nothing, so scans
        stay short, and the stand-in's transactions, which copy the whole table and its stream, stay cheap
        however many operations came before."""
        from models.table import StratusItem

        assert StratusItem.Meta.table_name == self.names[0]
        StratusItem.delete_table()
        StratusItem.create_table(wait=True)
        self.dynamodb.delete_table(TableName=self.names[1])
        create_idempotency_table(self.endpoint, self.names[1])


# --------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def app_environment(app_environment: dict[str, str]) -> Iterator[dict[str, str]]:
    unlimited = DATA_TEST_ENVIRONMENT["RATE_LIMIT_WRITE"]
    with data_test_environment(app_environment) as environment, pytest.MonkeyPatch.context() as patch:
        # Every class of limit: the admin and key routes are "expensive", /health/ready "anonymous".
        for name in ("RATE_LIMIT_EXPENSIVE", "RATE_LIMIT_ANONYMOUS"):
            patch.setenv(name, unlimited)
        yield {**environment, "RATE_LIMIT_EXPENSIVE": unlimited, "RATE_LIMIT_ANONYMOUS": unlimited}


@pytest.fixture(scope="module")
def writes(tables: Tables) -> Iterator[WriteLog]:
    log = WriteLog()
    with intercepting_aws_calls(log.record):
        yield log


@pytest.fixture(scope="module")
def tables(aws_resources: LocalResources) -> Tables:
    return Tables(aws_resources)


@pytest.fixture(scope="module")
def world(client: TestClient, aws_resources: LocalResources, make_user: Any, writes: WriteLog) -> World:
    return World(
        client=client,
        resources=aws_resources,
        admin=make_user(("admin", "user")),
        member=make_user(),
        invitee=make_user(),
        newcomer=make_user(),
    )


# What an accepted request made that would stand in the way of the next ones, undone at once: a person
# holds at most 20 active API keys.
CLEANUPS: dict[str, Callable[[World, Any], None]] = {
    "api-keys-create_api_key": lambda world, response: _revoke_key(world, response.json()["id"]),
}


def _revoke_key(world: World, key_id: str) -> None:
    response = world.client.delete(f"/api-keys/{key_id}", headers=bearer(world.admin))
    assert response.status_code == 204, response.text


@dataclass
class Tally:
    requests: int = 0
    mutations: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counted = Tally()
    yield counted
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and counted.mutations:
        fewest, most = min(counted.mutations.values()), max(counted.mutations.values())
        with capture.global_and_fixture_disabled():
            print(
                f"\nhostile inputs: {len(counted.mutations)} operations, {fewest}-{most} mutations each, "
                f"{counted.requests} requests in {time.monotonic() - counted.started:.0f} s"
            )


# --------------------------------------------------------------------------------------------------------
# The checks


def _problem_failures(response: Any) -> list[str]:
    if response.status_code >= 500:
        return [f"{response.status_code}: {response.text[:300]}"]
    if response.status_code < 400:
        return []
    if response.headers.get("content-type") != PROBLEM:
        return [f"{response.status_code} as {response.headers.get('content-type')}: {response.text[:200]}"]
    try:
        problem = response.json()
    except ValueError:
        return [f"{response.status_code}: a problem that is not JSON: {response.text[:200]}"]
    failures = []
    if not isinstance(problem, dict) or not set(problem) >= PROBLEM_MEMBERS:
        failures.append(f"{response.status_code}: not the problem shape: {response.text[:200]}")
    elif problem["status"] != response.status_code or not str(problem["type"]).startswith("urn:stratus:"):
        failures.append(f"{response.status_code}: problem says {problem['status']} {problem['type']}")
    elif not all(isinstance(problem[member], str) for member in PROBLEM_MEMBERS - {"status"}):
        failures.append(f"{response.status_code}: problem members that are not strings: {problem}")
    return failures


def _send(call: Call, client: TestClient, tally: Tally) -> Any:
    """The answer to `call`; sent again (twice at most) when the stand-in was too slow to answer in time
    (a 503 the app gives for a transient AWS failure, as it should): a loaded machine is no finding, a
    503 that stays is."""
    for attempt in range(1 + TRANSIENT_RETRIES):
        response = call.send(client)
        tally.requests += 1
        transient = response.status_code == 503 and response.headers.get("content-type") == PROBLEM
        if not transient or attempt == TRANSIENT_RETRIES:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def _changed(before: Snapshot, after: Snapshot, keys: set[ItemKey] | None = None) -> set[ItemKey]:
    compared = before.keys() | after.keys() if keys is None else keys
    return {key for key in compared if before.get(key) != after.get(key)}


def test_the_checks_tell_a_server_error_a_bare_error_a_partial_problem_and_a_change() -> None:
    def answer(status: int, body: dict[str, Any], content_type: str = PROBLEM) -> httpx.Response:
        return httpx.Response(status, headers={"content-type": content_type}, content=json.dumps(body))

    problem = {
        "type": "urn:stratus:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "No such project.",
        "instance": "/projects/x",
        "request_id": "r",
    }
    assert _problem_failures(answer(404, problem)) == []
    assert _problem_failures(answer(500, {**problem, "status": 500}))
    assert _problem_failures(answer(422, {"detail": []}, "application/json"))
    assert _problem_failures(answer(404, {k: v for k, v in problem.items() if k != "request_id"}))
    assert _problem_failures(answer(400, problem))
    key: ItemKey = ("table", (("pk", '{"S": "P#1"}'),))
    assert _changed({key: {"v": 1}}, {key: {"v": 2}}) == {key}
    assert _changed({key: {"v": 1}}, {}) == {key}
    assert _changed({key: {"v": 1}}, {key: {"v": 1}}) == set()


def test_every_path_parameter_has_a_way_to_a_valid_value() -> None:
    names = {
        parameter["name"]
        for _, _, operation in OPERATIONS
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert names <= set(PATH_PARAMETERS), f"add to PATH_PARAMETERS: {sorted(names - set(PATH_PARAMETERS))}"


def test_the_document_tested_is_the_apps(client: TestClient) -> None:
    served = _operations(client.app.openapi())  # type: ignore[attr-defined]
    assert [(m, p) for m, p, _ in served] == [(m, p) for m, p, _ in OPERATIONS]


@pytest.mark.parametrize(
    ("method", "template", "operation"),
    OPERATIONS,
    ids=[operation["operationId"] for _, _, operation in OPERATIONS],
)
def test_hostile_input_gets_a_problem_and_writes_nothing(
    world: World,
    writes: WriteLog,
    tables: Tables,
    tally: Tally,
    method: str,
    template: str,
    operation: dict[str, Any],
) -> None:
    client, operation_id = world.client, operation["operationId"]
    tables.recreate()
    baseline_items = Items(world)
    baseline = _send(_valid_call(method, template, operation, world, baseline_items), client, tally)
    assert baseline.status_code < 300, (
        f"the valid request must succeed for the mutations to reach the code behind validation: "
        f"{baseline.status_code} {baseline.text[:300]}"
    )
    # Fresh items for the mutations when the valid request may have used its own up (a deletion).
    items = baseline_items if method == "GET" else Items(world)
    call = _valid_call(method, template, operation, world, items)
    mutations = _mutations(call, operation)
    tally.mutations[operation_id] = len(mutations)

    failures: list[str] = []
    # Exactly what the tables hold before each request: every item written since is read back at once.
    state = tables.scan()
    for mutation in mutations:
        mark = writes.mark()
        response = _send(mutation.apply(call), client, tally)
        refused = response.status_code >= 300
        failures.extend(f"{mutation.description}: {failure}" for failure in _problem_failures(response))
        if not refused:
            if mutation.never_valid:
                failures.append(f"{mutation.description}: accepted ({response.status_code})")
            if operation_id in CLEANUPS:
                CLEANUPS[operation_id](world, response)
        written = writes.items_since(mark)
        now = tables.read(written)
        if refused:
            # A record made and removed within the request (an idempotency key reserved, then released
            # when the request failed) leaves nothing behind: only what stays counts.
            changed = _changed(state, now, written)
            failures.extend(f"{mutation.description}: refused, but changed {key}" for key in sorted(changed))
            failures.extend(
                f"{mutation.description}: refused, but called Cognito {name}"
                for name in writes.directory_since(mark)
            )
        state = {key: item for key, item in state.items() if key not in written} | now
    # Nothing was written that the record of calls did not show.
    unrecorded = _changed(state, tables.scan())
    failures.extend(f"changed without a recorded write: {key}" for key in sorted(unrecorded))
    assert not failures, f"{len(failures)} of {len(mutations)} mutations failed:\n" + "\n".join(failures)
