"""Config validation: every option's keys, types and ranges come from its class's constructor signature.

A component declares its parameters once, in `__init__`, e.g.

    def __init__(self, mask: Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE] = 0.1): ...

and `validate(cfg)` checks the composed Hydra config against those signatures before anything is built, so a
bad value stops the run with one line naming the key, the value and what is allowed. `PER_SAMPLE` marks the
parameters that may differ per sample in a batch (their values arrive as (B,) tensors at build time).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from hydra.errors import InstantiationException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from dps_exp.errors import ConfigError, UserError

TARGET = "_target_"


@dataclass(frozen=True)
class Range:
    """Closed (or, with *_open, open) bounds on a number; None means unbounded on that side. (NaN and ±inf are
    refused before, by the float check.)"""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self, name: str) -> str:
        left = "" if self.lo is None else f"{self.lo:g} {'<' if self.lo_open else '≤'} "
        right = "" if self.hi is None else f" {'<' if self.hi_open else '≤'} {self.hi:g}"
        return f"{left}{name}{right}"


class _PerSample:
    def __repr__(self) -> str:
        return "PER_SAMPLE"


PER_SAMPLE = _PerSample()
"""Annotation marker: the parameter may take a different value for each sample of a batch."""


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


def per_sample_keys(node: Mapping, prefix: str) -> Iterator[str]:
    """Dotted keys under `node` whose parameter is marked PER_SAMPLE."""
    params = parameters(target_of(node))
    for name, value in node.items():
        if name == TARGET or name not in params:
            continue
        tp, extras = _split_annotated(params[name][0])
        if PER_SAMPLE in extras:
            yield f"{prefix}.{name}"
        elif isinstance(value, Mapping) and TARGET in value:
            yield from per_sample_keys(value, f"{prefix}.{name}")


# ---------------------------------------------------------------------------------------------------------
# Checking values


def _fail(key: str, value: Any, allowed: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={_show(value)} is not allowed: it must {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value)
    return repr(value) if isinstance(value, str) else str(value)


def check_value(tp: Any, value: Any, key: str) -> None:
    """Raise ConfigError unless `value` fits the annotation `tp` (types, Literal choices, Range bounds)."""
    base, extras = _split_annotated(tp)
    name = key.rsplit(".", 1)[-1]
    if PER_SAMPLE in extras and isinstance(value, list | tuple | ListConfig):  # one value per sweep point
        if not value:
            _fail(key, value, "hold at least one value")
        if any(isinstance(v, list | tuple | ListConfig) for v in value):
            _fail(key, value, "hold one value per point, not lists")
        for i, v in enumerate(value):
            check_value(tp, v, f"{key}[{i}]")
        return
    origin, args = typing.get_origin(base), typing.get_args(base)

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        options = [a for a in args if a is not type(None) and _representable(a)]
        errors = []
        for option in options:
            try:
                check_value(Annotated[option, *extras] if extras else option, value, key)
                return
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={_show(value)} is not allowed")
    if origin is Literal:
        if value not in args:
            _fail(key, value, "be one of " + ", ".join(str(a) for a in args))
    elif base is bool:
        if not isinstance(value, bool):
            _fail(key, value, "be true or false")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "be an integer")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(key, value, "be a number")
        if not math.isfinite(value):  # nan and inf compare false or true with any bound
            _fail(key, value, "be a finite number")
    elif base is str:
        if not isinstance(value, str):
            _fail(key, value, "be a string")
    elif origin in (list, tuple, collections.abc.Sequence) or base in (list, tuple):
        if not isinstance(value, list | tuple | ListConfig):
            _fail(key, value, "be a list")
        item = args[0] if args else Any
        for i, v in enumerate(value):
            check_value(Annotated[item, *extras] if extras else item, v, f"{key}[{i}]")
        return
    elif dataclasses.is_dataclass(base) or inspect.isclass(base) and isinstance(value, Mapping):
        if not isinstance(value, Mapping):
            _fail(key, value, f"be a mapping of {base.__name__}'s keys")
        check_node(value, key, target=base)
        return

    for extra in extras:
        if isinstance(extra, Range) and value not in extra:
            _fail(key, value, "satisfy " + extra.describe(name))


def _representable(tp: Any) -> bool:
    """Whether a type can come from YAML (tensors and modules in a Union are build-time only)."""
    base, _ = _split_annotated(tp)
    origin = typing.get_origin(base)
    if origin is Literal or base in (bool, int, float, str, type(None), Any):
        return True
    if origin in (list, tuple, collections.abc.Sequence, typing.Union, types.UnionType):
        return all(_representable(a) for a in typing.get_args(base) if a is not Ellipsis)
    return dataclasses.is_dataclass(base)


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
        if name not in params:
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
