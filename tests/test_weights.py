"""Weights from the Hub: a fake Hugging Face cache (offline), corrupt, truncated and missing files, and a
mocked Hub that reports size and sha256. Nothing here touches the network."""

from __future__ import annotations

import datetime
import hashlib
import os

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch

from dps_exp.denoisers import adm
from dps_exp.denoisers.adm import ADMConfig, ADMUNet
from dps_exp.denoisers.pretrained import PretrainedADM
from dps_exp.denoisers.weights import CheckpointError, hub_file, load_state_dict, local_file
from tests.helpers import cli

REPO, FILE, COMMIT = "deepinv/diffunet", "diffusion_ffhq_10m.pt", "0123456789abcdef0123456789abcdef01234567"
TINY = ADMConfig(
    image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32
)


def tiny_state():
    torch.manual_seed(0)
    return ADMUNet(TINY).state_dict()


def plant(cache, data: bytes, name_sha: str | None = None):
    """Write `data` into a Hugging Face cache layout as REPO/FILE at COMMIT; the blob is named by sha256."""
    repo = cache / "models--deepinv--diffunet"
    sha = name_sha or hashlib.sha256(data).hexdigest()
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "blobs" / sha).write_bytes(data)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../../blobs/{sha}", snap / FILE)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return sha


def checkpoint_bytes(tmp_path) -> bytes:
    path = tmp_path / "ckpt.pt"
    torch.save(tiny_state(), path)
    return path.read_bytes()


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setitem(adm.ARCHITECTURES, "ffhq", TINY)  # a small network behind the real name
    return cache


def test_a_cached_checkpoint_loads_offline(offline_cache, tmp_path, schedule):
    sha = plant(offline_cache, checkpoint_bytes(tmp_path))
    prior = PretrainedADM(schedule, architecture="ffhq")
    assert prior.provenance == {"source": f"hf://{REPO}/{FILE}@{COMMIT}", "sha256": sha}
    for name, value in tiny_state().items():
        assert torch.equal(prior.net.state_dict()[name], value)
    out = prior(torch.randn(1, 3, 16, 16), torch.tensor([10]))
    assert out.var is not None and out.eps.shape == (1, 3, 16, 16)


def test_a_corrupt_cached_file_is_refused(offline_cache, tmp_path, schedule):
    data = checkpoint_bytes(tmp_path)
    plant(offline_cache, data[:100] + b"X" + data[101:], name_sha=hashlib.sha256(data).hexdigest())
    with pytest.raises(CheckpointError, match="has sha256 .* expected .*corrupt"):
        PretrainedADM(schedule)


def test_a_truncated_cached_file_is_refused(offline_cache, tmp_path, schedule):
    data = checkpoint_bytes(tmp_path)
    plant(offline_cache, data[: len(data) // 2], name_sha=hashlib.sha256(data).hexdigest())
    with pytest.raises(CheckpointError, match="corrupt"):
        PretrainedADM(schedule)


def test_a_missing_file_says_how_to_get_it(offline_cache, schedule):
    with pytest.raises(CheckpointError) as err:
        PretrainedADM(schedule)
    message = str(err.value)
    assert "Hub is unreachable" in message and "not in the cache" in message
    assert f"hf download {REPO} {FILE}" in message and "denoiser.checkpoint=PATH" in message


def test_a_local_checkpoint_loads_and_a_pinned_sha256_is_checked(offline_cache, tmp_path, schedule):
    path = tmp_path / "local.pt"
    path.write_bytes(checkpoint_bytes(tmp_path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert PretrainedADM(schedule, checkpoint=str(path)).provenance["sha256"] == sha
    with pytest.raises(CheckpointError, match="expected 0{64}"):
        PretrainedADM(schedule, checkpoint=str(path), sha256="0" * 64)
    with pytest.raises(CheckpointError, match="does not exist"):
        PretrainedADM(schedule, checkpoint=str(tmp_path / "nope.pt"))


def test_an_unreadable_local_file_and_a_mismatched_state_dict_are_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    for content, reason in [(b"not a checkpoint", "not a pickle"), (b"", "the file ends early"),
                            (bytes(range(256)) * 4, "not a pickle")]:  # fmt: skip
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=f"cannot read the checkpoint .*{reason}.*corrupt"):
            load_state_dict(ADMUNet(TINY), local_file(str(bad)))
    pickled = tmp_path / "pickled.pt"
    torch.save({"weight": torch.zeros(3), "saved": datetime.datetime(2026, 1, 1)}, pickled)  # not allowlisted
    with pytest.raises(CheckpointError, match="objects other than tensors") as err:
        load_state_dict(ADMUNet(TINY), local_file(str(pickled)))
    assert "weights_only=False" not in str(err.value)  # no advice to unpickle untrusted files
    other = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="does not fit the ADMUNet"):
        load_state_dict(ADMUNet(TINY), local_file(str(other)))


class FakeMeta:
    def __init__(self, etag, size):
        self.etag, self.size, self.commit_hash = f'"{etag}"', size, COMMIT


@pytest.mark.parametrize("report", ["ok", "size", "sha"])
def test_online_the_file_is_checked_against_what_the_hub_reports(tmp_path, monkeypatch, report):
    path = tmp_path / "downloaded.pt"
    path.write_bytes(checkpoint_bytes(tmp_path))
    sha, size = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size
    meta = FakeMeta("f" * 64 if report == "sha" else sha, size + 1 if report == "size" else size)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url: meta)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, file, revision=None: str(path))
    if report == "ok":
        ckpt = hub_file(REPO, FILE)
        assert ckpt.sha256 == sha and ckpt.source == f"hf://{REPO}/{FILE}@{COMMIT}"
    else:
        with pytest.raises(CheckpointError, match="truncated or corrupt" if report == "size" else "expected f{64}"):
            hub_file(REPO, FILE)


def test_the_cli_stops_with_one_line_when_weights_cannot_be_had(tmp_path):
    env_cache = tmp_path / "empty-cache"
    env_cache.mkdir()
    proc = cli("denoiser=ffhq", "logger=none", cwd=tmp_path, env={"HF_HUB_CACHE": str(env_cache)})
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: cannot download deepinv/diffunet/diffusion_ffhq_10m.pt")
    assert not list(tmp_path.rglob("results.jsonl"))


class RunsCode:
    """Unpickled, it would run a shell command that creates `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Custom:
    def __init__(self):
        self.weight = torch.zeros(3)


def test_a_pickle_carrying_code_or_objects_is_refused_as_such_not_called_corrupt(tmp_path):
    marker = tmp_path / "ran"
    cases = {"code.pt": {"weight": torch.zeros(3), "x": RunsCode(marker)}, "object.pt": {"x": Custom()}}
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
    refused = "it holds objects other than tensors ({}; refused: loading it could run code)"
    with pytest.raises(CheckpointError) as err:
        load_state_dict(ADMUNet(TINY), local_file(str(tmp_path / "code.pt")))
    assert refused.format(f"{os.system.__module__}.system") in str(err.value)  # posix.system: a blocked module
    assert "corrupt" not in str(err.value) and "weights_only=False" not in str(err.value)
    assert not marker.exists()  # refused, never run
    with pytest.raises(CheckpointError) as err:
        load_state_dict(ADMUNet(TINY), local_file(str(tmp_path / "object.pt")))
    assert refused.format(f"{__name__}.Custom") in str(err.value) and "corrupt" not in str(err.value)


def test_a_checkpoint_pickled_with_protocol_4_says_so(tmp_path):
    path = tmp_path / "p4.pt"
    torch.save(tiny_state(), path, pickle_protocol=4)  # torch's weights-only unpickler reads protocol 2 only
    with pytest.raises(CheckpointError, match="saved with pickle protocol 4 or higher") as err:
        load_state_dict(ADMUNet(TINY), local_file(str(path)))
    assert "corrupt" not in str(err.value)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_weights_stored_in_another_float_dtype_are_cast_and_the_cast_recorded(offline_cache, tmp_path, schedule, dtype):
    state = {k: v.to(dtype) for k, v in tiny_state().items()}
    path = tmp_path / "half.pt"
    torch.save(state, path)
    prior = PretrainedADM(schedule, checkpoint=str(path))
    assert prior.provenance["cast"] == f"{str(dtype).removeprefix('torch.')} -> float32"
    for name, value in prior.net.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, state[name].float())
    out = prior(torch.randn(1, 3, 16, 16), torch.tensor([10]))  # crashed here: float32 input, float16 weights
    assert out.eps.dtype == torch.float32 and out.eps.isfinite().all()
    torch.save(tiny_state(), path)
    assert "cast" not in PretrainedADM(schedule, checkpoint=str(path)).provenance


def test_integer_buffers_keep_their_dtype_and_safetensors_are_cast_too(tmp_path):
    from safetensors.torch import save_file

    with torch.device("meta"):
        norm = torch.nn.BatchNorm2d(3)  # weight, bias, running stats (float) and num_batches_tracked (int64)
    state = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v + 7
        for k, v in torch.nn.BatchNorm2d(3).state_dict().items()
    }
    save_file(state, tmp_path / "norm.safetensors")
    provenance = load_state_dict(norm, local_file(str(tmp_path / "norm.safetensors")), assign=True)
    assert provenance["cast"] == "bfloat16 -> float32"
    assert norm.num_batches_tracked.dtype == torch.int64 and norm.num_batches_tracked.item() == 7
    assert norm.weight.dtype == norm.running_var.dtype == torch.float32
