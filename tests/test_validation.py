"""The signature-as-schema checker (dps_exp/config.py) on its own: pydantic checks the values, the messages are
the one-line ConfigErrors the CLI prints. Fast: no Hydra composition, plain dicts against small classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import annotated_types
import pytest
from omegaconf import OmegaConf

from dps_exp.config import PER_SAMPLE, Range, check_node, check_value, describe
from dps_exp.errors import ConfigError


class Part:
    def __init__(self, size: Annotated[int, Range(1, 8)] = 2):
        self.size = size


@dataclass(frozen=True)
class Shape:
    width: int = 4
    ratios: tuple[float, ...] = (1.0,)


class Thing:
    SUPPLIED = ("schedule",)

    def __init__(
        self,
        schedule: object,
        root: str,
        mask: Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE] = 0.1,
        steps: Annotated[int, Range(1, 1000)] = 10,
        limit: Annotated[int, Range(1, None)] | None = None,
        kind: Literal["a", "b"] = "a",
        size: Literal[64, 2048] = 64,
        names: list[Literal["psnr", "ssim"]] = ("psnr",),
        scales: list[Annotated[float, Range(0, 1, lo_open=True)]] = (1.0,),
        flag: bool = False,
        shape: Shape = Shape(),
        part: Part | None = None,
        rate: Annotated[float, annotated_types.Gt(0)] = 1.0,
    ):
        pass


TARGET = f"{__name__}.Thing"


def check(**values):
    check_node({"_target_": TARGET, "root": "/data", **values}, "thing")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"mask": 1, "steps": 1000, "limit": None, "kind": "b", "flag": True},  # an int is a number
        {"mask": [0.1, 0.5, 1.0]},  # per sample: one value per point
        {"limit": 3, "size": 2048, "names": ["ssim", "psnr"], "scales": [0.5, 1]},
        {"shape": {"width": 8, "ratios": [0.5, 2.0]}},
        {"part": {"_target_": f"{__name__}.Part", "size": 8}},
        {"rate": 1e-9},
    ],
)
def test_good_values_pass(values):
    check(**values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"mask": 1.5}, "thing.mask=1.5 is not allowed: it must satisfy 0 < mask ≤ 1"),
        ({"mask": 0}, "thing.mask=0 is not allowed: it must satisfy 0 < mask ≤ 1"),
        ({"steps": 0}, "thing.steps=0 is not allowed: it must satisfy 1 ≤ steps ≤ 1000"),
        ({"rate": 0}, "thing.rate=0 is not allowed: it must satisfy 0 < rate"),  # annotated_types directly
        ({"steps": True}, "thing.steps=True is not allowed: it must be an integer"),  # a bool is no int
        ({"steps": 2.0}, "thing.steps=2.0 is not allowed: it must be an integer"),
        ({"steps": "3"}, "thing.steps='3' is not allowed: it must be an integer"),  # strict: no parsing
        ({"mask": True}, "thing.mask=True is not allowed: it must be a number"),
        ({"mask": "0.5"}, "thing.mask='0.5' is not allowed: it must be a number"),
        ({"mask": float("nan")}, "thing.mask=nan is not allowed: it must be a finite number"),
        ({"rate": float("inf")}, "thing.rate=inf is not allowed: it must be a finite number"),
        ({"limit": 0}, "thing.limit=0 is not allowed: it must satisfy 1 ≤ limit"),
        ({"limit": "all"}, "thing.limit='all' is not allowed: it must be an integer"),
        ({"kind": "c"}, "thing.kind='c' is not allowed: it must be one of a, b"),
        ({"size": 63}, "thing.size=63 is not allowed: it must be one of 64, 2048"),
        ({"flag": 1}, "thing.flag=1 is not allowed: it must be true or false"),
        ({"root": 3}, "thing.root=3 is not allowed: it must be a string"),
        ({"names": "psnr"}, "thing.names='psnr' is not allowed: it must be a list of values among psnr, ssim"),
        ({"names": ["psnr", "fid"]}, "thing.names[1]='fid' is not allowed: it must be one of psnr, ssim"),
        ({"scales": [1.0, 0.0]}, "thing.scales[1]=0.0 is not allowed: it must satisfy 0 < scales[1] ≤ 1"),
        ({"mask": [0.1, 2.0]}, "thing.mask[1]=2.0 is not allowed: it must satisfy 0 < mask[1] ≤ 1"),
        ({"mask": []}, "thing.mask=[] is not allowed: it must hold at least one value"),
        (
            {"mask": [[0.1], [0.2]]},
            "thing.mask=[[0.1], [0.2]] is not allowed: it must hold one value per point, not lists",
        ),
        ({"shape": {"width": 1.5}}, "thing.shape.width=1.5 is not allowed: it must be an integer"),
        ({"shape": {"ratios": [1, "x"]}}, "thing.shape.ratios[1]='x' is not allowed: it must be a number"),
        ({"shape": {"depth": 2}}, "thing.shape.depth is not a key of thing.shape (Shape); valid keys: width, ratios"),
        ({"shape": 3}, "thing.shape=3 is not allowed: it must be a mapping of Shape's keys"),
        (
            {"part": {"_target_": f"{__name__}.Part", "size": 9}},
            "thing.part.size=9 is not allowed: it must satisfy 1 ≤ size ≤ 8",
        ),
        ({"schedule": 1}, "thing.schedule is not a key of thing (Thing); valid keys: root, mask,"),  # supplied
        ({"root": "???"}, "thing.root is required: pass thing.root=... (Thing has no default for it)"),
    ],
)
def test_bad_values_give_one_line(values, message):
    with pytest.raises(ConfigError) as err:
        check(**values)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_a_required_key_left_out_and_a_supplied_one_not_asked_for():
    with pytest.raises(ConfigError, match=r"^thing.root is required: Thing has no default for it$"):
        check_node({"_target_": TARGET}, "thing")


def test_omegaconf_containers_are_checked_as_their_values():
    """The sweepers validate composed (unresolved) configs: lists arrive as ListConfig."""
    node = OmegaConf.create({"_target_": TARGET, "root": "/data", "mask": [0.1, 0.5], "names": ["psnr", "x"]})
    with pytest.raises(ConfigError, match=r"thing.names\[1\]='x' is not allowed"):
        check_node(node, "thing")


def test_range_is_annotated_types_bounds():
    assert list(Range(0, 1, lo_open=True)) == [annotated_types.Gt(0), annotated_types.Le(1)]
    assert list(Range(2, None)) == [annotated_types.Ge(2)]
    assert list(Range(None, 1, hi_open=True)) == [annotated_types.Lt(1)]


@pytest.mark.parametrize(
    "tp, words",
    [
        (Annotated[float, Range(0, 1, lo_open=True), PER_SAMPLE], "a number, 0 < x ≤ 1"),
        (Annotated[int, Range(1, None)] | None, "an integer, 1 ≤ x, or null"),
        (Literal["a", "b"], "one of a, b"),
        (list[Annotated[float, Range(0, 1, lo_open=True)]], "a list of numbers, 0 < x[i] ≤ 1"),
        (list[list[float]] | None, "a list of lists of numbers, or null"),
        (str | None, "a string, or null"),
        (bool, "true or false"),
    ],
)
def test_describe_says_what_is_allowed(tp, words):
    assert describe(tp, "x") == words


def test_check_value_on_a_bare_annotation():
    check_value(Annotated[float, Range(0, None)], 0, "sigma")
    with pytest.raises(ConfigError, match="^sigma=-inf is not allowed: it must be a finite number$"):
        check_value(Annotated[float, Range(0, None)], float("-inf"), "sigma")
