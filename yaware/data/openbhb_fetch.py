"""Fetching the OpenBHB files a run reads from Hugging Face, at a pinned revision.

Only what is missing under the root is fetched, file by file: ``participants.tsv`` when
absent, then the VBM map (and, when asked, the ROI volumes) of each subject it lists
whose file is absent. A file already there is never fetched again, so nothing a user put
or edited under the root is overwritten; ``huggingface_hub`` writes each download to a
temporary file and renames it, so an interrupted fetch leaves no partial map.
``huggingface_hub`` is optional: ``pip install yaware[openbhb]``.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from yaware.data.openbhb import REPO_ID, REVISION, TABLE, fetch_hint, missing_files
from yaware.errors import DataError

log = logging.getLogger(__name__)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise DataError(
            "fetching OpenBHB needs huggingface_hub: pip install 'yaware[openbhb]' (or pip "
            "install huggingface_hub)"
        ) from None
    return huggingface_hub


def _download(hub, root: Path, filename: str) -> None:
    """One file of the dataset into ``root``; DataError, naming the file and the command,
    for any failure (offline, refused, not in the dataset)."""
    try:
        hub.hf_hub_download(
            repo_id=REPO_ID,
            filename=filename,
            repo_type="dataset",
            revision=REVISION,
            local_dir=root,
        )
    except Exception as err:  # the hub raises many types: offline, HTTP, missing entry
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(
            f"could not fetch {filename} of {REPO_ID} (revision {REVISION[:12]}) into {root}: "
            f"{type(err).__name__}{': ' + detail if detail else ''}. Without internet here, "
            f"{fetch_hint(root)} on a machine that has it, and copy {root} here"
        ) from None


def fetch_openbhb(root: str | os.PathLike, roi: bool = False, threads: int = 8) -> list[str]:
    """Fetch the missing files under ``root``; returns them, relative to ``root``."""
    root = Path(root)
    fetched = []
    hub = None
    if not (root / TABLE).is_file():
        hub = _hub()
        root.mkdir(parents=True, exist_ok=True)
        _download(hub, root, TABLE)
        fetched.append(TABLE)
    missing = missing_files(root, roi)
    if missing:
        hub = hub or _hub()
        log.info("fetching %d files of %s into %s", len(missing), REPO_ID, root)
        with ThreadPoolExecutor(max(1, threads)) as pool:
            list(pool.map(lambda name: _download(hub, root, name), missing))
        fetched.extend(missing)
    return fetched
