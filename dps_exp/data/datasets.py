"""The paper's validation sets: the first 1000 FFHQ images and an ImageNet file list.

Both are `Images` (dps_exp/data/images.py): an ordered list of files, loaded as (3, size, size) tensors in [0, 1]
(centre-cropped to a square, resized with antialiasing). An image's index is its position in the whole
validation list, so seeds and shards do not change with `first`, `limit` or batching.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from dps_exp.config import Range
from dps_exp.data.base import BatchSize
from dps_exp.data.images import EXTENSIONS, Images
from dps_exp.errors import DataError

log = logging.getLogger(__name__)
PATTERNS = ("*.png", "*.jpg", "*.jpeg")


def image_files(folder: Path) -> list[Path]:
    """Everything named *.png/*.jpg/*.jpeg under `folder` (subfolders too: FFHQ ships as 00000/00000.png …), sorted
    by path. What is not a readable image file (a symlink loop, a dangling symlink) stays in the list: it is
    recorded as unreadable when loaded, not left out unsaid (which would also shift every later index)."""
    files = [p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def hub_dataset(repo_id: str, revision: str | None, patterns: Sequence[str]) -> Path:
    """A local snapshot of the Hugging Face dataset repository `repo_id` (only the files matching `patterns`),
    downloaded or found in the Hugging Face cache. The one remote call of the data sets."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    what = repo_id + (f"@{revision}" if revision else "")
    try:
        return Path(
            snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, allow_patterns=list(patterns))
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise DataError(f"the Hub has no dataset {what}: {str(err).splitlines()[0]}") from None
    except Exception as err:  # offline mode, DNS, timeouts, a snapshot missing from the cache
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        include = " ".join(f"--include '{p}'" for p in patterns)
        raise DataError(
            f"cannot get the dataset {what} from the Hugging Face Hub ({reason}). On a machine with network run "
            f"`hf download {repo_id} --repo-type dataset {include}` and copy ~/.cache/huggingface here, or put "
            "the images in a folder and pass data.root=PATH."
        ) from None


class FFHQVal(Images):
    """The DPS validation set: FFHQ images `first` … `first + count − 1` in file-name order (the paper: the
    first 1000, 00000–00999), from the folder `root` (searched recursively) or from the Hugging Face dataset
    repository `hub_repo` (at `hub_revision`; only files matching `hub_patterns` are fetched). The repository
    must hold image files (PNG/JPEG), not Parquet shards.

    Args:
        root: a folder of FFHQ PNG/JPEG files, searched recursively, sorted by path
        hub_repo: instead of `root`: a Hub dataset repository, fetched with `huggingface_hub` (offline: from its cache)
        hub_revision: a commit of `hub_repo` to pin
        hub_patterns: which files of `hub_repo` to fetch, e.g. `["images1024x1024/00000/*"]`
        first: index of the first image. Paper: 0
        count: how many images from `first` on. Paper: 1000 (00000–00999)
    """

    def __init__(
        self,
        root: str | None = None,
        hub_repo: str | None = None,
        hub_revision: str | None = None,
        hub_patterns: Sequence[str] = PATTERNS,
        first: Annotated[int, Range(0, None)] = 0,
        count: Annotated[int, Range(1, None)] = 1000,
        size: Annotated[int, Range(8, 1024)] = 256,
        batch_size: BatchSize = "auto",
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        if (root is None) == (hub_repo is None):
            raise DataError("data=ffhq_val needs exactly one of data.root (a folder) and data.hub_repo (a Hub dataset)")
        folder = Path(root).expanduser() if root else hub_dataset(hub_repo, hub_revision, hub_patterns)
        if not folder.is_dir():
            raise DataError(f"data.root={root!r} is not a folder")
        files = image_files(folder)[first : first + count]
        if len(files) < count:
            log.warning(
                "%s holds %d images from number %d on, fewer than data.count=%d", folder, len(files), first, count
            )
        super().__init__(files, size, batch_size, limit, shard, num_shards, start=first)


class ImageNetVal(Images):
    """Images named in `file_list` (a text file, one path per line, relative to `root`; blank lines and lines
    starting with # are skipped), in that order.

    Args:
        root: the folder the file list's paths are relative to
        file_list: text file, one image path per line (`#` comments and blank lines skipped)
    """

    def __init__(
        self,
        root: str,
        file_list: str,
        size: Annotated[int, Range(8, 1024)] = 256,
        batch_size: BatchSize = "auto",
        limit: Annotated[int, Range(1, None)] | None = None,
        shard: Annotated[int, Range(0, None)] = 0,
        num_shards: Annotated[int, Range(1, None)] = 1,
    ):
        listing = Path(file_list).expanduser()
        if not listing.is_file():
            raise DataError(f"data.file_list={file_list!r} is not a file")
        names = [s for line in listing.read_text().splitlines() if (s := line.strip()) and not s.startswith("#")]
        files = [Path(root).expanduser() / name for name in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise DataError(f"data.file_list names {len(missing)} file(s) not in data.root={root!r}, e.g. {missing[0]}")
        super().__init__(files, size, batch_size, limit, shard, num_shards)
