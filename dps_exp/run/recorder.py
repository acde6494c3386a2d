"""A point's directory, the source of truth: its files, written so that no finished result is lost, torn or
duplicated (appends are whole lines, JSON files are replaced atomically, one process at a time holds the
directory), and read back leniently (a torn or foreign line is skipped, with a warning)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor

from dps_exp.errors import UserError

log = logging.getLogger(__name__)

RESULTS = "results.jsonl"
SUMMARY = "summary.json"
IMAGE_LIST = "images.txt"
LOCK = ".lock"


class RecordError(UserError):
    """A result that could not be written (disk full, a file made read-only, an unwritable directory)."""


class DirectoryInUse(UserError):
    """Another process holds the run directory."""


def _jsonable(value: Any) -> Any:
    """Floats that JSON cannot hold (NaN, ±inf) become null: a diverged sample has no score."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def aggregate(rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Mean, std (sample), min, max and count of every metric over the rows whose status is ok."""
    values: dict[str, list[float]] = {}
    for row in rows:
        if row.get("status") != "ok":
            continue
        for name, value in row.get("metrics", {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                values.setdefault(name, []).append(float(value))
    return {
        name: {
            "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v),
            "max": max(v),
            "n": len(v),
        }
        for name, v in values.items()
    }


def counts(rows: Sequence[Mapping]) -> dict[str, int]:
    return {
        "rows": len(rows),
        "ok": sum(r.get("status") == "ok" for r in rows),
        "diverged": sum(r.get("status") == "diverged" for r in rows),
        "unreadable": sum(r.get("status") == "unreadable" for r in rows),
    }


def cannot_write(path: Path, err: OSError) -> RecordError:
    what = f"[Errno {err.errno}] {os.strerror(err.errno)}" if err.errno else str(err)
    advice = "free some space" if err.errno in (errno.ENOSPC, errno.EDQUOT) else "make it writable"
    return RecordError(
        f"cannot write {path}: {what}. Finished results are kept: {advice}, then run the same command again "
        "(resume=true, or into the same directory) to continue"
    )


def write_json(path: Path, data: Mapping) -> None:
    """Write atomically, so an interrupted run never leaves half a file; no temporary file is left behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(_jsonable(dict(data)), indent=2, default=str))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise cannot_write(path, err) from None


_WARNED: set[tuple[Path, int, str]] = set()
"""The (file, line number, line) already warned about in this process."""


def read_results(path: Path) -> list[dict]:
    """Every result of a results.jsonl. A line that is not a result (not JSON, or JSON that is not an object
    with a `key`) is skipped with a warning naming the file and line, but for a torn last line (a run killed
    mid-write), skipped silently; a later row of a key replaces an earlier one (an unreadable image, retried
    once its file was mended)."""
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    rows: dict[str, dict] = {}
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
            if number == len(lines) and not text.endswith("\n"):
                continue  # a torn last line
        if not isinstance(row, dict) or not isinstance(row.get("key"), str):
            if (path, number, line) not in _WARNED:  # a run reads its file several times: one warning a line
                _WARNED.add((path, number, line))
                log.warning("%s line %d is not a result (a JSON object with a key): skipped", path, number)
            continue
        rows.pop(row["key"], None)
        rows[row["key"]] = row
    return list(rows.values())


class Recorder:
    """Writes one point's results into its directory:

    results.jsonl  one line per image × sweep point, appended and flushed as each finishes
    images/        a PNG panel per line (measurement | reconstruction | ground truth), and the reconstruction
                   alone as an 8-bit PNG (what FID is computed from)
    images.txt     the ordered list of the job's images (their sources)
    operators/     the drawn operator of each line (masks, kernels) as a tensor file and a PNG per mask or kernel
    summary.json   aggregates, the resolved config, wall time, device
    .lock          held (flock) by the process writing here, released when it ends, however it ends

    Every write that fails (disk full, a read-only file) raises RecordError naming the file, after undoing
    any partial line; the results before it stay.
    """

    def __init__(self, out_dir: Path):
        self.dir = Path(out_dir)
        self._lock: IO | None = None
        try:
            for sub in ("images", "operators"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise cannot_write(self.dir, err) from None
        self.results_path = self.dir / RESULTS

    def claim(self) -> None:
        """Hold the directory for this process (an exclusive flock on `.lock`, which the OS releases when the
        process dies); DirectoryInUse, naming the holder's pid, when another process holds it. Also cuts a
        torn last line (a run killed mid-write), so appends start clean."""
        path = self.dir / LOCK
        try:
            handle = open(path, "a+")  # noqa: SIM115 - held open as the claim
        except OSError as err:
            raise cannot_write(path, err) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DirectoryInUse(
                f"{self.dir} is in use by another process (pid {holder}): wait for it to finish, or choose "
                "another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle
        self._drop_torn_line()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _drop_torn_line(self) -> None:
        if not self.results_path.exists():
            return
        data = self.results_path.read_bytes()
        if data and not data.endswith(b"\n"):
            self._truncate(data.rfind(b"\n") + 1)

    def _truncate(self, size: int) -> None:
        try:
            os.truncate(self.results_path, size)
        except OSError as err:
            raise cannot_write(self.results_path, err) from None

    def rows(self) -> list[dict]:
        return read_results(self.results_path)

    def append(self, row: Mapping) -> None:
        """One line, written whole and synced; a write that fails leaves the file as it was."""
        line = (json.dumps(_jsonable(dict(row)), default=str) + "\n").encode()
        size = self.results_path.stat().st_size if self.results_path.exists() else 0
        try:
            with self.results_path.open("ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            if self.results_path.exists() and self.results_path.stat().st_size > size:
                with open(self.results_path, "r+b") as f:  # undo the partial line where the disk allows
                    f.truncate(size)
            raise cannot_write(self.results_path, err) from None

    def _save(self, rel: str, write) -> str:
        try:
            write(self.dir / rel)
        except OSError as err:
            raise cannot_write(self.dir / rel, err) from None
        return rel

    def save_panel(self, key: str, panels: Sequence[Tensor]) -> str:
        """Save [0, 1] images (3, H, W) side by side; returns the path relative to the run directory."""
        from torchvision.utils import make_grid, save_image  # here: the CLI checks its config before it loads

        grid = make_grid(list(panels), nrow=len(panels), padding=2, pad_value=1.0)
        return self._save(f"images/{key}.png", lambda path: save_image(grid, path))

    def save_reconstruction(self, key: str, x: Tensor) -> str:
        """Save a [0, 1] image (3, H, W) on its own as an 8-bit PNG; returns the path relative to the run directory."""
        from torchvision.utils import save_image

        return self._save(f"images/{key}_recon.png", lambda path: save_image(x, path))

    def write_image_list(self, sources: Sequence[str]) -> None:
        self._save(IMAGE_LIST, lambda path: path.write_text("".join(f"{s}\n" for s in sources)))

    def save_operator(self, key: str, state: Mapping[str, Tensor]) -> str | None:
        """Save the tensors that pin down one sample's operator; each 2-D or (C, H, W) one (a mask, a kernel)
        also as a PNG for a look, scaled so that its largest value is white."""
        if not state:
            return None
        from torchvision.utils import save_image

        rel = self._save(f"operators/{key}.pt", lambda path: torch.save({k: v.cpu() for k, v in state.items()}, path))
        for name, v in state.items():
            if v.ndim in (2, 3):
                v = v.detach().cpu().float()
                self._save(
                    f"operators/{key}_{name}.png", lambda path, v=v: save_image(v / v.max().clamp_min(1e-12), path)
                )
        return rel

    def write_summary(self, summary: Mapping) -> None:
        write_json(self.dir / SUMMARY, summary)
