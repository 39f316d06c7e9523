"""What a tRPC procedure is: a name and kind, the REST operation it mirrors (its twin), the input it takes,
the output it gives, and a resolver that calls the service the twin's route calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from trpc.protocol import TrpcError, invalid_input

if TYPE_CHECKING:
    from starlette.requests import Request

    from auth import Principal
    from pagination import CursorCodec
    from settings import Settings

Kind = Literal["query", "mutation"]
M = TypeVar("M", bound=BaseModel)


class Params(BaseModel):
    """A procedure's own input fields: what its twin takes from the path, the query string and headers
    (If-Match becomes `expectedVersion`, Idempotency-Key `idempotencyKey`), named in camelCase."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


@dataclass(frozen=True)
class Call:
    """One call of a batch: the HTTP request it came in, the caller (when the twin knows one) and the
    procedure."""

    request: Request
    principal: Principal | None
    procedure: Procedure

    @property
    def user(self) -> Principal:
        if self.principal is None:
            raise RuntimeError(f"{self.procedure.name} resolves a caller its REST twin does not require")
        return self.principal

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def cursors(self) -> CursorCodec:
        codec: CursorCodec = self.request.app.state.cursor_codec
        return codec


# Returns a model, a JSON-ready dict (an idempotent create's stored answer) or None; may be async.
Resolver = Callable[[Call, Any, Any], object | Awaitable[object]]


@dataclass(frozen=True)
class Procedure:
    name: str
    kind: Kind
    # The REST operation this procedure mirrors, (method, path template): its guards are run for every
    # call, and tests hold the two to the same input and output.
    rest: tuple[str, str]
    resolve: Resolver = field(repr=False)
    params: type[Params] | None = None
    # The twin's request body model, whose fields sit beside the params' in the input object.
    body: type[BaseModel] | None = None
    # The twin's response model; None when it answers 204.
    output: Any = None

    def __post_init__(self) -> None:
        if self.params is not None and self.body is not None:
            shared = self.param_names & {f.alias or n for n, f in self.body.model_fields.items()}
            if shared:
                raise ValueError(f"{self.name}: input fields named twice: {sorted(shared)}")

    @cached_property
    def param_names(self) -> frozenset[str]:
        if self.params is None:
            return frozenset()
        return frozenset(f.alias or n for n, f in self.params.model_fields.items())

    @property
    def takes_input(self) -> bool:
        return self.params is not None or self.body is not None

    @property
    def input_optional(self) -> bool:
        """Whether the input may be left out (it then means `{}`): no body and no required field."""
        return self.body is None and (
            self.params is None or not any(f.is_required() for f in self.params.model_fields.values())
        )

    def parse_input(self, raw: object) -> tuple[Params | None, BaseModel | None]:
        """The params and the body from the call's input, or BAD_REQUEST listing every invalid field."""
        if not self.takes_input:
            if raw is not None:
                raise TrpcError("BAD_REQUEST", f"{self.name} takes no input.")
            return None, None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise invalid_input(
                [{"loc": ("input",), "msg": "Input should be an object", "type": "model_type"}]
            )
        own = {key: value for key, value in raw.items() if self.body is None or key in self.param_names}
        errors: list[Any] = []
        params = self._validate(self.params, own, errors) if self.params is not None else None
        body = None
        if self.body is not None:
            rest = {key: value for key, value in raw.items() if key not in self.param_names}
            body = self._validate(self.body, rest, errors)
        if errors:
            raise invalid_input(errors)
        return params, body

    @staticmethod
    def _validate(model: type[M], data: dict[str, Any], errors: list[Any]) -> M | None:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            errors.extend(
                {**detail, "loc": ("input", *detail["loc"])}
                for detail in error.errors(include_url=False, include_input=False)
            )
            return None

    @staticmethod
    def serialize(result: object) -> Any:
        """The call's `data`: a model as the twin's response renders it (JSON mode, fields by alias)."""
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json", by_alias=True)
        return result
