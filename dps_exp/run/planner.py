"""Which (image, sweep point, draw) jobs remain, and whether a point's directory may take this run's results.

A directory is refused when its rows would mix with this run's in one summary: rows of another identity (a
configuration, precision, device, … that changes the numbers), of another sweep point, or of another image list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dps_exp.data.base import Item
from dps_exp.errors import ConfigError, UserError
from dps_exp.run.points import Point, differences
from dps_exp.run.settings import Identity

Job = tuple[Item, Point, int]
"""An image, a sweep point and a draw number."""


def row_key(item: Item, point: Point) -> str:
    """A result's key in results.jsonl: the image index and the point's id."""
    return f"{item.index:05d}-{point.id}"


def pending(items: Sequence[Item], points: Sequence[Point], samples: int) -> list[Job]:
    """Every job whose (image, point) row is not recorded yet, image by image, point by point, draw by draw."""
    return [(it, p, s) for it in items for p in points if row_key(it, p) not in p.done for s in range(samples)]


def check_directory(
    directory: Path, rows: Sequence[Mapping], identity: Identity, point: Point, names: Mapping[int, str]
):
    """Raise ConfigError (one line, naming what differs) unless every row recorded in `directory` is of this
    run's identity, of `point`, and of an image this run holds under the same file name (`names`: index →
    file name of this run's images)."""
    choose = "choose another output directory"
    for row in rows:
        if why := identity.mismatch(row):
            raise ConfigError(f"{directory} already holds results {why}: {choose}")
    other = next((r for r in rows if not r["key"].endswith(f"-{point.id}")), None)
    if other is not None:
        raise ConfigError(
            f"{directory} already holds results of another sweep point "
            f"({differences(other.get('point', {}), point.values)}): {choose}"
        )
    absent = next((r for r in rows if r["index"] not in names), None)
    if absent is not None:  # its summary would count images this run's list (images.txt) does not hold
        raise ConfigError(
            f"{directory} holds results for image {absent['index']} ({Path(absent['source']).name}), which is not "
            f"among this run's images (data.limit, data.shard or data.root changed): {choose}, or run with the "
            "earlier image list"
        )
    moved = next((r for r in rows if Path(r["source"]).name != names[r["index"]]), None)
    if moved is not None:  # rows are keyed by image index: resuming over another list would mix images up
        raise ConfigError(
            f"{directory} holds results for another image list (image {moved['index']} was "
            f"{Path(moved['source']).name} there, is {names[moved['index']]} now): {choose}"
        )


def claim(points: Sequence[Point], identity: Identity, items: Sequence[Item], job=None) -> None:
    """Hold each point's directory for this process and check that the rows it holds are this run's kind (a
    ConfigError, or DirectoryInUse, releases every directory claimed); note the rows already done. Points listed
    in one run write their `.hydra/` from `job` (the Hydra job's task config and Hydra config)."""
    names = {item.index: Path(item.source).name for item in items}
    try:
        for point in points:
            point.recorder.claim()
            rows = point.recorder.rows()
            check_directory(point.recorder.dir, rows, identity, point, names)
            point.done = {r["key"] for r in rows if r.get("status") != "unreadable"}  # a mended file is retried
            if point.listed:
                point.write_hydra_files(*(job or ()))
    except UserError:
        for point in points:
            point.recorder.release()
        raise
