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
import warnings
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


def load_state_dict(module: nn.Module, ckpt: Checkpoint, assign: bool = False) -> dict:
    """torch.load(weights_only=True) (or, for a `.safetensors` file, safetensors' loader) and
    load_state_dict(strict=True), with errors that name the file. Returns the checkpoint's provenance
    (`ckpt.describe()`, plus `cast` when its floating tensors were stored in another dtype than the module's).

    `assign=True` takes the loaded tensors as the parameters (for modules built on the meta device).
    """
    try:
        if ckpt.path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(ckpt.path)
        else:
            with warnings.catch_warnings():  # refusal() says it in one line
                warnings.filterwarnings("ignore", "Detected pickle protocol")
                state = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's own message suggests weights_only=False, which we never do
        raise refusal(ckpt, str(err)) from None
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else "the file ends early (empty or truncated)"
        raise corrupt(ckpt, f"{type(err).__name__}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    cast = to_module_dtypes(state, module)
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as err:  # missing or unexpected keys, shape mismatches
        details = "; ".join(line.strip()[:200] for line in str(err).splitlines()[1:4])
        raise CheckpointError(
            f"the checkpoint {ckpt.path} does not fit the {type(module).__name__} configured ({details}). "
            "Check denoiser.architecture against the file."
        ) from None
    if cast:
        log.info("the checkpoint %s stores its weights in %s: cast to the network's dtype", ckpt.path, cast)
    return ckpt.describe() | ({"cast": cast} if cast else {})


def refusal(ckpt: Checkpoint, message: str) -> CheckpointError:
    """The error for torch's weights-only unpickler refusing the file (an UnpicklingError with `message`).

    torch names each class or function it will not import as `GLOBAL module.name` ("Unsupported global: GLOBAL
    datetime.datetime was not an allowed global by default"; "Trying to load unsupported GLOBAL posix.system whose
    module posix is blocked", torch ≥ 2.6); any other refusal is bytes its unpickler cannot parse."""
    if named := re.search(r"GLOBAL (\S+)", message):
        return CheckpointError(
            f"cannot read the checkpoint {ckpt.path}: it holds objects other than tensors ({named[1]}; refused: "
            "loading it could run code). This project loads tensors in plain containers only "
            "(torch.load(weights_only=True)); save the network's state_dict alone"
        )
    if f"Unsupported operand {pickle.FRAME[0]}" in message:  # FRAME: pickle protocol 4 and up
        return CheckpointError(
            f"cannot read the checkpoint {ckpt.path}: it was saved with pickle protocol 4 or higher, which "
            "torch.load(weights_only=True) does not read; save it again with torch.save's default protocol"
        )
    return corrupt(ckpt, "UnpicklingError: not a pickle")


def to_module_dtypes(state: dict, module: nn.Module) -> str | None:
    """Cast, in place, each floating tensor of `state` to the dtype of the module's tensor of the same name
    (float32 for our networks: the run's `precision` decides the compute dtype, not the file); returns what was
    cast, e.g. "float16 -> float32", or None. Integer tensors, and keys the module lacks, are left as they are
    (load_state_dict reports unknown keys)."""
    if not isinstance(state, dict):
        return None
    targets, casts = module.state_dict(), set()
    for key, value in state.items():
        target = targets.get(key)
        floats = isinstance(value, torch.Tensor) and value.is_floating_point() and target is not None
        if floats and target.is_floating_point() and value.dtype != target.dtype:
            casts.add(f"{dtype_name(value.dtype)} -> {dtype_name(target.dtype)}")
            state[key] = value.to(target.dtype)
    return ", ".join(sorted(casts)) or None


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
