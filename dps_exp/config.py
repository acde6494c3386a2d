"""Config validation: every option's keys, types and ranges come from its class's constructor signature.

A component declares its parameters once, in `__init__`, e.g.

    def __init__(self, mask: Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE] = 0.1): ...

and `validate(cfg)` checks the composed Hydra config against those signatures before anything is built, so a
bad value stops the run with one line naming the key, the value and what is allowed. `PER_SAMPLE` marks the
parameters that may differ per sample in a batch (their values arrive as (B,) tensors at build time).

Values are checked by pydantic (`TypeAdapter` in strict JSON mode, as YAML types them: no "3" for 3, no true
for 1, an int is a number, a list fits a tuple; NaN and ±inf are refused for every float); `Range` is a group
of `annotated_types` bounds. This module walks the config's nodes (keys, required keys, nested `_target_`
nodes, dataclass-typed parameters, per-sample lists) and turns pydantic's first error into the one-line
`ConfigError`. `describe` says in words what an annotation allows: the same words for the error messages and
the README's config reference (scripts/config_reference.py).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import annotated_types
from hydra.errors import InstantiationException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from pydantic import ConfigDict, TypeAdapter, ValidationError

from dps_exp.errors import ConfigError, UserError

TARGET = "_target_"


@dataclass(frozen=True)
class Range(annotated_types.GroupedMetadata):
    """Closed (or, with *_open, open) bounds on a number; None means unbounded on that side. It stands for
    the `annotated_types` bounds Ge/Gt (lo) and Le/Lt (hi), which pydantic checks."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __iter__(self) -> Iterator[annotated_types.BaseMetadata]:
        if self.lo is not None:
            yield annotated_types.Gt(self.lo) if self.lo_open else annotated_types.Ge(self.lo)
        if self.hi is not None:
            yield annotated_types.Lt(self.hi) if self.hi_open else annotated_types.Le(self.hi)


class _PerSample:
    def __repr__(self) -> str:
        return "PER_SAMPLE"


PER_SAMPLE = _PerSample()
"""Annotation marker: the parameter may take a different value for each sample of a batch (pydantic ignores it)."""


# ---------------------------------------------------------------------------------------------------------
# Signature introspection


def target_of(node: Mapping) -> Any:
    """The class or function a config node's `_target_` names."""
    path = node[TARGET]
    try:
        return get_class(path)
    except Exception:
        try:
            return get_method(path)
        except Exception as err:
            raise ConfigError(f"{TARGET}={path!r} cannot be imported: {err}") from None


def parameters(target: Any) -> dict[str, tuple[Any, inspect.Parameter]]:
    """Constructor parameters of `target` as {name: (annotation with extras, Parameter)}."""
    fn = target.__init__ if inspect.isclass(target) else target
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    return {
        name: (hints.get(name, Any), p)
        for name, p in sig.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _split_annotated(tp: Any) -> tuple[Any, tuple]:
    if typing.get_origin(tp) is Annotated:
        base, *extras = typing.get_args(tp)
        return base, tuple(extras)
    return tp, ()


def is_per_sample(tp: Any) -> bool:
    """Whether an annotation carries the PER_SAMPLE marker."""
    return PER_SAMPLE in _split_annotated(tp)[1]


def is_structured(tp: Any) -> bool:
    """Whether a parameter's value is a mapping of another signature's keys (a dataclass such as ADMConfig)."""
    return dataclasses.is_dataclass(_split_annotated(tp)[0])


def per_sample_keys(node: Mapping, prefix: str) -> Iterator[str]:
    """Dotted keys under `node` whose parameter is marked PER_SAMPLE."""
    params = parameters(target_of(node))
    for name, value in node.items():
        if name == TARGET or name not in params:
            continue
        if is_per_sample(params[name][0]):
            yield f"{prefix}.{name}"
        elif isinstance(value, Mapping) and TARGET in value:
            yield from per_sample_keys(value, f"{prefix}.{name}")


# ---------------------------------------------------------------------------------------------------------
# What an annotation allows: pydantic checks it, its JSON schema says it in words

_STRICT = ConfigDict(strict=True, allow_inf_nan=False)
_BOUNDS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_NOUNS = {  # JSON-schema type: (singular, plural)
    "integer": ("an integer", "integers"),
    "number": ("a number", "numbers"),
    "string": ("a string", "strings"),
    "boolean": ("true or false", "true/false values"),
    "object": ("a mapping", "mappings"),
    "null": ("null", "nulls"),
}


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(tp, config=_STRICT)


@functools.cache
def schema(tp: Any) -> dict:
    """The JSON schema pydantic validates `tp` against (bounds as minimum/exclusiveMinimum/...)."""
    return _adapter(tp).json_schema()


def _non_null(s: dict) -> dict:
    """`s` without its null alternative (X | None → X); nullability is said separately."""
    options = [o for o in s.get("anyOf", ()) if o != {"type": "null"}]
    return options[0] if len(options) == 1 else s


def bounds(s: dict, name: str) -> str:
    """`lo < name ≤ hi`-style bounds of a number schema ('' when it has none)."""
    left = right = ""
    if "minimum" in s or "exclusiveMinimum" in s:
        left = f"{s['minimum']:g} ≤ " if "minimum" in s else f"{s['exclusiveMinimum']:g} < "
    if "maximum" in s or "exclusiveMaximum" in s:
        right = f" ≤ {s['maximum']:g}" if "maximum" in s else f" < {s['exclusiveMaximum']:g}"
    return f"{left}{name}{right}" if left or right else ""


def _noun(s: dict, plural: bool = False) -> str:
    s = _non_null(s)
    if "anyOf" in s:
        return " or ".join(_noun(o, plural) for o in s["anyOf"])
    if "enum" in s or "const" in s:
        values = ", ".join(str(v) for v in s.get("enum", [s.get("const")]))
        return f"values among {values}" if plural else f"one of {values}"
    if s.get("type") == "array":
        item = _noun(s.get("items", {}), plural=True) if s.get("items") else "values"
        return f"lists of {item}" if plural else f"a list of {item}"
    singular, many = _NOUNS.get(s.get("type", ""), ("a value", "values"))
    return many if plural else singular


def describe(tp: Any, name: str) -> str:
    """What `tp` allows, in words: 'a number, 0 < mask ≤ 1', 'an integer, 1 ≤ limit, or null'."""
    s = schema(tp)
    inner = _non_null(s)
    if "anyOf" in inner:  # alternatives, each with its own bounds: 'one of auto or an integer, 1 ≤ batch_size'
        text = " or ".join(", ".join(filter(None, (_noun(o), bounds(o, name)))) for o in inner["anyOf"])
        return text + (", or null" if inner is not s else "")
    text = _noun(inner)
    item = inner.get("items", {}) if inner.get("type") == "array" else inner
    if limits := bounds(item, name + ("[i]" if item is not inner else "")):
        text += f", {limits}"
    return text + (", or null" if inner is not s else "")


# ---------------------------------------------------------------------------------------------------------
# Checking values


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={_show(value)} is not allowed: it must {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


def _explain(error: Mapping, tp: Any, key: str) -> typing.NoReturn:
    """Raise pydantic's `error` (one of a ValidationError's) as the one-line ConfigError."""
    s, where = schema(tp), ""
    for part in error["loc"]:  # list indices; a union member's tag (never for X | None) stops the walk
        items = _non_null(s).get("items")
        if not isinstance(part, int) or items is None:
            break
        s, where = items, f"{where}[{part}]"
    s, full = _non_null(s), key + where
    if error["type"] in _BOUNDS:  # of the alternative that has bounds, when there are several
        s = next((o for o in s.get("anyOf", ()) if bounds(o, "")), s)
        allowed = "satisfy " + bounds(s, full.rsplit(".", 1)[-1])
    elif error["type"] == "finite_number":  # nan and inf compare false or true with any bound
        allowed = "be a finite number"
    else:
        allowed = "be " + _noun(s)
    _fail(full, error["input"], allowed)


def _takes_lists(s: dict) -> bool:
    """Whether a JSON schema admits a list (`Any`'s empty schema does)."""
    return not s or s.get("type") == "array" or any(_takes_lists(option) for option in s.get("anyOf", []))


def check_value(tp: Any, value: Any, key: str) -> None:
    """Raise ConfigError unless `value` fits the annotation `tp` (types, Literal choices, bounds)."""
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if is_per_sample(tp) and isinstance(value, list | tuple):  # one value per sweep point
        if not value:
            _fail(key, value, "hold at least one value")
        if any(isinstance(v, list | tuple) for v in value):
            _fail(key, value, "hold one value per point, not lists")
        for i, v in enumerate(value):
            check_value(tp, v, f"{key}[{i}]")
        return
    if isinstance(value, list | tuple) and not _takes_lists(schema(tp)):  # a list of values, as per-sample keys take
        name = ",".join(map(str, value))
        raise ConfigError(
            f"{key}={_show(value)} is not allowed: {key} takes one value per run (it is not per sample): sweep it "
            f"with -m {key}={name}"
        )
    base, _ = _split_annotated(tp)
    if dataclasses.is_dataclass(base) or inspect.isclass(base) and base is not Any and isinstance(value, Mapping):
        if not isinstance(value, Mapping):
            _fail(key, value, f"be a mapping of {base.__name__}'s keys")
        check_node(value, key, target=base)
        return
    try:  # config values are JSON data: strict JSON mode takes a list for a tuple, never "3" for 3 or true for 1
        _adapter(tp).validate_json(json.dumps(value, allow_nan=True))
    except ValidationError as err:  # of a union's errors, a bound missed says most ('1 ≤ batch_size')
        errors = err.errors()
        _explain(next((e for e in errors if e["type"] in _BOUNDS), errors[0]), tp, key)


def check_node(node: Mapping, key: str, target: Any | None = None) -> None:
    """Check a node's keys against the signature of `target` (or of its own `_target_`), nested nodes too.

    Constructor arguments a class lists in `SUPPLIED` (e.g. a prior's `schedule`) come from the code that
    builds it, not from the config.
    """
    if target is None:
        if TARGET not in node:
            raise ConfigError(f"{key} has no {TARGET}: it must name the class it configures")
        target = target_of(node)
    injected = frozenset(getattr(target, "SUPPLIED", ()))
    params = parameters(target)
    for name, value in node.items():
        if name == TARGET or name.startswith("_"):
            continue
        full = f"{key}.{name}" if key else name
        if name not in params or name in injected:
            valid = ", ".join(n for n in params if n not in injected) or "none"
            where = f"{key} ({target.__name__})" if key else "the top level"
            raise ConfigError(f"{full} is not a key of {where}; valid keys: {valid}")
        if value == MISSING:
            raise ConfigError(f"{full} is required: pass {full}=... ({target.__name__} has no default for it)")
        if isinstance(value, Mapping) and TARGET in value:
            check_node(value, full)
        else:
            check_value(params[name][0], value, full)
    for name, (_, p) in params.items():
        if p.default is p.empty and name not in node and name not in injected:
            raise ConfigError(f"{key}.{name} is required: {target.__name__} has no default for it")


def resolve(cfg: DictConfig) -> dict:
    """The config as plain containers with interpolations resolved; a bad interpolation is a ConfigError."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # omegaconf raises several unrelated types for bad interpolations
        raise ConfigError(f"the config cannot be resolved: {err}".splitlines()[0]) from None


def build(node: Mapping, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, letting the user-facing errors of constructors through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise
