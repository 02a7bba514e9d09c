"""The base of hwtune's custom-resource models: one declaration per rule, checked in two places.

Every cross-field rule of a TuningStudy, TuningTrial or HardwarePool is written once, as a `Rule`
next to the model it constrains: a CEL expression for the API server and a Python predicate for
pydantic. ``hwtune.api.crdgen`` copies the CEL into the generated CRD (``x-kubernetes-validations``,
with ``fieldPath`` so ``kubectl apply`` names the field) or, for fields the structural schema must
leave untyped (scalar lists that mix strings and floats are invisible to CEL in CRD schemas), into a
ValidatingAdmissionPolicy. The model runs the Python predicate, so ``hwtune validate`` (offline) and
the operator refuse exactly what the API server refuses, with the same field path and message.
``tests/api`` and ``tests/cluster/test_crds.py`` run one table of bad manifests against both.

Field paths use the API server's notation: ``spec.parameters[lr].min``, ``spec.objectives[1]``.
"""

from __future__ import annotations

import enum
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

__all__ = [
    "CrdModel",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "Enforcement",
    "FieldError",
    "FreeForm",
    "JsonScalar",
    "ManifestError",
    "Reason",
    "SpecError",
    "Rule",
    "StatusModel",
    "field_errors",
    "join_key",
    "join_path",
    "unique_list",
]

# Kubernetes object names (RFC 1123). Pools, studies and PVCs are referenced by these.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

RULE_ERROR_TYPE = "hwtune_rule"


class Reason(str, enum.Enum):
    """How the API server words a refusal (``reason`` of an x-kubernetes-validations rule)."""

    INVALID = "FieldValueInvalid"
    REQUIRED = "FieldValueRequired"
    FORBIDDEN = "FieldValueForbidden"
    DUPLICATE = "FieldValueDuplicate"

    @property
    def prefix(self) -> str:
        """The words the API server puts before the rule's message."""
        return {
            Reason.INVALID: "Invalid value",
            Reason.REQUIRED: "Required value",
            Reason.FORBIDDEN: "Forbidden",
            Reason.DUPLICATE: "Duplicate value",
        }[self]


class Enforcement(str, enum.Enum):
    """Where, besides pydantic, a rule is enforced."""

    SCHEMA = "schema"  # x-kubernetes-validations in the CRD (the usual place)
    POLICY = "policy"  # the ValidatingAdmissionPolicy: the rule reads fields the schema leaves untyped
    OPERATOR = "operator"  # pydantic only (CLI + operator): CEL cannot express it (e.g. cycles)


@dataclass(frozen=True)
class Rule:
    """A rule over one model instance.

    ``check(model)`` returns True when the rule holds, False to report ``message``, or a string
    that replaces ``message`` (to name the offending key, as ``message_expression`` does in CEL).
    ``cel`` is evaluated with ``self`` bound to the same object on the server. ``field`` is the
    path of the offending field relative to the model ("min", "condition.parameter"); empty means
    the model itself.
    """

    message: str
    check: Callable[[Any], bool | str]
    cel: str | None = None
    field: str = ""
    reason: Reason = Reason.INVALID
    message_expression: str | None = None
    enforced_by: Enforcement = Enforcement.SCHEMA

    def __post_init__(self) -> None:
        if self.cel is None and self.enforced_by is not Enforcement.OPERATOR:
            raise ValueError(f"rule {self.message!r} has no CEL but claims {self.enforced_by}")

    def schema_validation(self) -> dict[str, Any]:
        """The x-kubernetes-validations entry of this rule."""
        out: dict[str, Any] = {"rule": self.cel, "message": self.message, "reason": self.reason.value}
        if self.field:
            out["fieldPath"] = "." + self.field
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        return out


class CrdModel(BaseModel):
    """Base of every spec model: camelCase keys only (the API server knows no snake_case), unknown
    fields refused, field docstrings become the CRD's descriptions (``kubectl explain``)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        use_enum_values=False,
    )

    # Rules of this class only (not inherited): see Rule.
    __rules__: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Any:
        for rule in type(self).__dict__.get("__rules__", ()):
            outcome = rule.check(self)
            if outcome is True:
                continue
            message = outcome if isinstance(outcome, str) else rule.message
            raise PydanticCustomError(
                RULE_ERROR_TYPE, "{message}",
                {"message": message, "field": rule.field, "reason": rule.reason.value},
            )
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        rules = [r.schema_validation() for r in cls.__dict__.get("__rules__", ())
                 if r.enforced_by is Enforcement.SCHEMA]
        if rules:
            target["x-kubernetes-validations"] = rules
        return schema

    def to_dict(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(CrdModel):
    """Status is written by the operator in Python, so it also accepts field names
    (``spent_cost_usd=...``); users never write status."""

    model_config = ConfigDict(validate_by_name=True)


# ---------------------------------------------------------------------------------------------
# Types shared by the models.


def _json_scalar(value: Any) -> Any:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise PydanticCustomError("scalar_type", "must be a string, a number or a boolean")


# A string, number or boolean (a parameter value). Stored untyped by the API server.
JsonScalar = typing.Annotated[
    Any, PlainValidator(_json_scalar),
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True}),
]


def _free_form(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise PydanticCustomError("dict_type", "must be an object")
    return dict(value)


# An object hwtune does not interpret (pod template metadata, algorithm settings).
FreeForm = typing.Annotated[
    dict[str, Any], PlainValidator(_free_form),
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def _no_duplicates(items: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for index, item in enumerate(items):
        key = (type(item).__name__, item)
        if key in seen:
            raise PydanticCustomError(
                RULE_ERROR_TYPE, "{message}",
                {"message": f"Duplicate value: {item!r}", "field": f"[{index}]",
                 "reason": Reason.DUPLICATE.value},
            )
        seen.add(key)
    return items


def unique_list(item: Any, *, min_items: int = 0, max_items: int) -> Any:
    """A list without duplicates: ``x-kubernetes-list-type: set`` on the server."""
    return typing.Annotated[
        list[item],
        Field(min_length=min_items or None, max_length=max_items,
              json_schema_extra={"x-kubernetes-list-type": "set"}),
        AfterValidator(_no_duplicates),
    ]


def name_type(pattern: str, max_length: int) -> Any:
    return typing.Annotated[str, StringConstraints(pattern=pattern, max_length=max_length)]


# ---------------------------------------------------------------------------------------------
# Errors with the API server's field paths.


@dataclass(frozen=True)
class FieldError:
    """One refusal: ``path`` in the API server's notation, ``message`` says why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(ValueError):
    """The one error type for bad input (a manifest, a study spec, a pool, a YAML file): ``errors``
    lists every refusal as (field path, reason); ``source`` names the file (and document)."""

    def __init__(self, errors: Sequence[FieldError], source: str = "") -> None:
        self.errors = list(errors)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(str(e) for e in self.errors))

    @property
    def path(self) -> str:
        """Field path of the first refusal."""
        return self.errors[0].path if self.errors else ""

    @property
    def reason(self) -> str:
        """Reason of the first refusal."""
        return self.errors[0].message if self.errors else str(self)

    def lines(self) -> list[str]:
        """``file: field path: reason``, one refusal a line."""
        where = f"{self.source}: " if self.source else ""
        return [f"{where}{e}" for e in self.errors]

    def in_source(self, source: str) -> "ManifestError":
        """The same refusals, said of ``source`` (a file name)."""
        return ManifestError(self.errors, source)


class SpecError(ManifestError):
    """One refusal of one field, raised where input is turned into engine objects:
    ``SpecError("spec.parameters[lr].min", "must be > 0 for scale: log")``."""

    def __init__(self, path: str, reason: str, source: str = "") -> None:
        super().__init__([FieldError(path, reason)], source)


def join_path(prefix: str, key: str | int) -> str:
    """A field below ``prefix``: ``join_path("spec.budget", "maxTrials")`` is
    ``spec.budget.maxTrials``; an int is a list index: ``spec.objectives[1]``."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def join_key(prefix: str, key: Any) -> str:
    """An entry of a map below ``prefix``, as the API server writes it:
    ``join_key("spec.parameters", "lr")`` is ``spec.parameters[lr]``."""
    return f"{prefix}[{key}]"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return None
            tp = args[0]
        else:
            return tp


def _render_path(model: type[BaseModel] | None, loc: Sequence[str | int], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    tp: Any = model
    for item in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(item, int):
            parts.append(f"[{item}]")
            tp = typing.get_args(tp)[0] if origin is list and typing.get_args(tp) else None
        elif origin is dict:
            parts.append(f"[{item}]")
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else None
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            parts.append(f".{item}")
            tp = next((f.annotation for name, f in tp.model_fields.items()
                       if (f.alias or name) == item), None)
        else:
            parts.append(f".{item}")
            tp = None
    return "".join(parts).lstrip(".")


def _split_relative(field: str) -> list[str | int]:
    """'condition.parameter' -> ['condition', 'parameter']; '[3]' -> [3]."""
    out: list[str | int] = []
    for piece in field.replace("[", ".[").split("."):
        if not piece:
            continue
        out.append(int(piece[1:-1]) if piece.startswith("[") and piece[1:-1].isdigit() else piece)
    return out


def field_errors(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> list[FieldError]:
    """Turn a pydantic ValidationError of ``model`` into FieldErrors with API-server paths."""
    out: list[FieldError] = []
    for err in exc.errors():
        loc = list(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == RULE_ERROR_TYPE and ctx.get("field"):
            loc += _split_relative(ctx["field"])
        if err["type"] == "extra_forbidden":
            message = "unknown field (not declared in the schema)"
        elif err["type"] == "missing":
            message = "Required value"
        else:
            message = err["msg"]
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
        out.append(FieldError(_render_path(model, loc, prefix), message))
    return out
