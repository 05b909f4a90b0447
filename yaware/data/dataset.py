"""Scans in an (N, C, X, Y, Z) ``.npy`` array with a participants table aligned to its rows.

The array is memory-mapped and read one row at a time (``yaware.data.arrays.NpyArray``), so the
resident memory of an epoch stays flat whatever N is. float32 and float16 arrays are read,
returned as float32.
"""

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from yaware.data.arrays import NpyArray
from yaware.data.participants import (
    ID_COLUMN,
    check_category_column,
    check_label_column,
    read_table,
)
from yaware.errors import DataError


class ScanDataset(Dataset):
    """Scans of an array with the matching rows of its participants table.

    Args:
        array: path of the (N, C, X, Y, Z) ``.npy``.
        table: path of the participants table, one row per array row, same order.
        label: column(s) used as label (numeric, but see ``categories``); None for none.
        indices: subset of rows to expose (e.g. a split); all rows by default.
        labels: labels computed by the caller, one per table row (overrides ``label``).
        categories: codes of the categories of label columns that a categorical kernel
            reads (any values: text too), from :func:`yaware.data.participants.category_codes`.

    Scans come out as float32. With ``compact`` set (the engine does so on a GPU), rows of
    a float16 array stay float16: half the bytes through the loader's workers, pinned
    memory and the host-to-device copy; the engine casts them on the device.

    Raises:
        DataError: row counts differ, duplicated (participant_id, session) rows, or a
            missing or non-finite label. A table without participant_id is taken as the
            array's rows in order.
    """

    def __init__(
        self,
        array: str | os.PathLike,
        table: str | os.PathLike,
        label: str | Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        labels: np.ndarray | None = None,
        categories: Mapping[str, dict[str, int]] | None = None,
    ) -> None:
        self.compact = False
        self.array = NpyArray(array)
        self.table = read_table(table)
        source = f"{table} (rows of {array})"
        if len(self.table) != len(self.array):
            raise DataError(
                f"{table} has {len(self.table)} rows but {array} has {len(self.array)} "
                "scans; the table must list the array's rows in order (re-run the conversion)"
            )
        # Without participant_id (the original repository's metadata.csv: a label per
        # array row) rows are the array's in order, named by their number.
        if ID_COLUMN in self.table.columns:
            keys = [ID_COLUMN, "session"] if "session" in self.table.columns else [ID_COLUMN]
            duplicated = self.table.duplicated(keys, keep=False)
            if duplicated.any():
                rows = self.table.loc[duplicated, keys].head(4).to_dict("records")
                raise DataError(f"{table}: duplicated {keys} rows, e.g. {rows}; keep one per scan")
        if labels is not None:
            self.labels = np.asarray(labels)
        elif label is None:
            self.labels = np.zeros(len(self.table))
        else:
            columns = [label] if isinstance(label, str) else list(label)
            values = [
                check_category_column(self.table, c, source, categories[c])
                if categories and c in categories
                else check_label_column(self.table, c, source)
                for c in columns
            ]
            self.labels = values[0] if isinstance(label, str) else np.stack(values, 1)
        self.indices = np.arange(len(self.array)) if indices is None else np.asarray(indices)

    def _named(self, row: int) -> str:
        """ " (sub-01)": the row's participant, where the table names one."""
        if ID_COLUMN not in self.table.columns:
            return ""
        return f" ({self.table[ID_COLUMN].iloc[row]})"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.row_shape

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.indices[item])
        keep_half = self.compact and self.array.dtype == np.float16
        values = self.array.row(row, np.float16 if keep_half else np.float32)
        # A float64 sum is finite exactly when every voxel is: one pass, nothing allocated.
        if not np.isfinite(values.sum(dtype=np.float64)):
            raise DataError(
                f"{self.array.path}: row {row}{self._named(row)} has "
                f"{int((~np.isfinite(values)).sum())} NaN or infinite voxels; rerun QC and the "
                "conversion that wrote it (QC excludes such maps)"
            )
        return torch.from_numpy(values), torch.as_tensor(self.labels[row], dtype=torch.float32)


class EpochSampler(Sampler[int]):
    """A random order that depends only on (seed, epoch), so a resumed run replays it.

    With ``world > 1`` each rank takes every ``world``-th item of that order from position
    ``rank``, all ranks the same count (the last ``size % world`` items are left out of the
    epoch): disjoint shards with equal numbers of steps, as data parallelism needs.
    """

    def __init__(
        self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        self.size, self.seed, self.shuffle, self.epoch, self.skip = size, seed, shuffle, 0, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch's order; ``skip`` drops this rank's first items (mid-epoch resume)."""
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            order = list(range(self.size))
        else:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        shard = order[self.rank : self.size // self.world * self.world : self.world]
        return iter(shard[self.skip :])

    def __len__(self) -> int:
        return self.size // self.world - self.skip
