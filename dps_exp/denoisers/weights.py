"""Network weights: fetched from the Hugging Face Hub (the one remote call), verified, loaded strictly.

A checkpoint that cannot be had, does not match what the Hub reports, or does not fit the network stops the
run with a message saying what failed and how to fix it; nothing continues with random weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dps_exp.errors import UserError

log = logging.getLogger(__name__)
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, unreachable or does not fit the network."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    source: str
    """Where it came from: `hf://repo/file@commit` or the local path."""

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(path: Path, sha256: str | None, size: int | None, what: str) -> str:
    """Check size and sha256 (when known); returns the file's sha256."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise CheckpointError(
            f"{what} at {path} has {actual_size} bytes, the Hub reports {size}: the file is truncated or "
            "corrupt. Delete it and run again to download it afresh."
        )
    actual = file_sha256(path)
    if sha256 is not None and actual != sha256:
        raise CheckpointError(
            f"{what} at {path} has sha256 {actual}, expected {sha256}: the file is corrupt or not the "
            "published one. Delete it and run again to download it afresh."
        )
    return actual


def local_file(path: str) -> Checkpoint:
    """A checkpoint on disk (`denoiser.checkpoint=PATH`), with its sha256."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"denoiser.checkpoint={path!r} does not exist (or is not a file)")
    return Checkpoint(p, file_sha256(p), str(p.resolve()))


def hub_file(repo_id: str, filename: str, revision: str | None = None) -> Checkpoint:
    """Download `filename` from the Hub repository (or reuse the Hugging Face cache) and verify it.

    The expected size and sha256 are what the Hub reports now; when the Hub cannot be reached (offline, or
    HF_HUB_OFFLINE=1), a cached copy is checked against the sha256 the Hub reported when it was downloaded
    (the cache names each file by it), and the run says so.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    what = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    try:
        meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, revision=revision))
        path = Path(hf_hub_download(repo_id, filename, revision=revision))
        expected = meta.etag.strip('"') if meta.etag and SHA256.match(meta.etag.strip('"')) else None
        sha = verify(path, expected, meta.size, what)
        return Checkpoint(path, sha, f"hf://{repo_id}/{filename}@{meta.commit_hash}")
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise CheckpointError(f"the Hub has no {what}: {str(err).splitlines()[0]}") from None
    except CheckpointError:
        raise
    except Exception as err:  # offline mode, DNS, timeouts, proxies: all mean "the Hub is unreachable"
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"

    cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    if not isinstance(cached, str):
        raise CheckpointError(
            f"cannot download {what}: the Hugging Face Hub is unreachable ({reason}) and the file is not in "
            f"the cache. On a machine with network run `hf download {repo_id} {filename}` and copy "
            f"~/.cache/huggingface here, or download the file by hand and pass denoiser.checkpoint=PATH."
        )
    path = Path(cached)
    blob = os.path.basename(os.path.realpath(path))
    expected = blob if SHA256.match(blob) else None
    log.warning("the Hub is unreachable (%s): using the cached %s, checked against its recorded sha256", reason, what)
    commit = path.parent.name
    return Checkpoint(path, verify(path, expected, None, what), f"hf://{repo_id}/{filename}@{commit}")


def corrupt(ckpt: Checkpoint, reason: str) -> CheckpointError:
    return CheckpointError(
        f"cannot read the checkpoint {ckpt.path}: {reason}. "
        "The file is corrupt or not a PyTorch state dict; delete it and download it again."
    )


def load_state_dict(module: nn.Module, ckpt: Checkpoint, assign: bool = False) -> None:
    """torch.load(weights_only=True) (or, for a `.safetensors` file, safetensors' loader) and
    load_state_dict(strict=True), with errors that name the file.

    `assign=True` takes the loaded tensors as the parameters (for modules built on the meta device).
    """
    try:
        if ckpt.path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(ckpt.path)
        else:
            state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's own message suggests weights_only=False, which we never do
        if "Unsupported global" not in str(err):  # not a class it refused: bytes that are no pickle at all
            raise corrupt(ckpt, "UnpicklingError: not a pickle") from None
        raise CheckpointError(
            f"cannot read the checkpoint {ckpt.path}: it holds objects other than tensors and plain containers, "
            "which this project does not unpickle (torch.load(weights_only=True)); save its state_dict alone"
        ) from None
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else "the file ends early (empty or truncated)"
        raise corrupt(ckpt, f"{type(err).__name__}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as err:  # missing or unexpected keys, shape mismatches
        details = "; ".join(line.strip()[:200] for line in str(err).splitlines()[1:4])
        raise CheckpointError(
            f"the checkpoint {ckpt.path} does not fit the {type(module).__name__} configured ({details}). "
            "Check denoiser.architecture against the file."
        ) from None
