"""Scans in an (N, C, X, Y, Z) ``.npy`` array with a participants table aligned to its rows.

The array is memory-mapped and read one row at a time; after a row is copied out its pages
are dropped from the process (``madvise(MADV_DONTNEED)``), so the resident memory of an
epoch stays flat whatever N is. float32 and float16 arrays are read, returned as float32.
"""

import errno
import mmap
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from yaware.errors import DataError

ID_COLUMN = "participant_id"


class NpyArray:
    """Row-wise reader of a C-ordered ``.npy`` file through a private memory map.

    Opens lazily, so an instance can be handed to DataLoader workers (each maps the file
    itself after the fork).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"array {self.path} does not exist; check the path")
        try:
            with open(self.path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                self.offset = handle.tell()
        except (ValueError, OSError) as err:
            raise DataError(f"{self.path} is not a readable .npy array ({err})") from err
        if fortran:
            raise DataError(
                f"{self.path} is stored in Fortran order; save it C-ordered: "
                "np.save(path, np.ascontiguousarray(np.load(path)))"
            )
        if dtype not in (np.float32, np.float16, np.float64):
            raise DataError(
                f"{self.path} holds {dtype}; expected float32 or float16 scans: "
                "np.save(path, np.load(path).astype(np.float32))"
            )
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        if len(self.shape) != 5:
            raise DataError(
                f"{self.path} has shape {self.shape}; expected (N, C, X, Y, Z), e.g. "
                "(N, 1, 121, 145, 121). Add the channel axis with arr[:, None]."
            )
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        expected = self.offset + self.row_bytes * self.shape[0]
        if self.path.stat().st_size < expected:
            raise DataError(
                f"{self.path} is truncated: {self.path.stat().st_size} bytes for a header "
                f"announcing {expected}; re-run the conversion that wrote it"
            )
        self._map: mmap.mmap | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None, "_pid": -1}

    def _mapping(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():
            with open(self.path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self._pid = os.getpid()
        return self._map

    def row(self, index: int, dtype: type = np.float32) -> np.ndarray:
        """Row ``index`` as a ``dtype`` array of shape (C, X, Y, Z), copied out of the map."""
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for {self.path} with {len(self)} rows")
        mapping = self._mapping()
        start = self.offset + index * self.row_bytes
        view = np.frombuffer(mapping, self.dtype, int(np.prod(self.row_shape)), start)
        out = view.astype(dtype).reshape(self.row_shape)
        del view
        page = mmap.PAGESIZE
        first = start // page * page
        mapping.madvise(mmap.MADV_DONTNEED, first, start + self.row_bytes - first)
        return out

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.row(int(i)) for i in indices])


_NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "None"]


class NpyRowWriter:
    """Writes an (N, ...) ``.npy`` row by row through a shared memory map.

    After a row is copied in, its pages are dropped from this process's mapping
    (``MADV_DONTNEED``): the data stays in the page cache and reaches the file, but the
    writer's resident memory does not grow with N. Rows may be written from several
    threads at once.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: str) -> None:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset = header.offset
        del header
        self.dtype = np.dtype(dtype)
        self.row_items = int(np.prod(shape[1:]))
        self.row_bytes = self.row_items * self.dtype.itemsize
        self._file = open(path, "r+b")  # noqa: SIM115 (closed in close())
        # The file is sparse: without its blocks reserved now, a disk that fills up later
        # kills the process with SIGBUS at a write through the map instead of an error.
        size = os.fstat(self._file.fileno()).st_size
        try:
            os.posix_fallocate(self._file.fileno(), 0, size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # cannot reserve here: go on
                self._file.close()
                raise
        self._map = mmap.mmap(self._file.fileno(), 0)

    def write(self, index: int, row: np.ndarray) -> None:
        start = self.offset + index * self.row_bytes
        view = np.frombuffer(self._map, self.dtype, self.row_items, start)
        view[:] = row.ravel()
        del view
        first = start // mmap.PAGESIZE * mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, first, start + self.row_bytes - first)

    def close(self) -> None:
        self._map.flush()
        self._map.close()
        os.fsync(self._file.fileno())
        self._file.close()


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a participants table: tab-separated (BIDS) unless the name ends in .csv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; check the path")
    sep = "," if path.suffix == ".csv" else "\t"
    try:
        with warnings.catch_warnings():
            # A row longer than the header: pandas would silently shift the columns.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            columns = pd.read_csv(path, sep=sep, nrows=0).columns
            # Identifiers are text, kept verbatim: an id like "nan" or "NA" is not missing.
            verbatim = [c for c in (ID_COLUMN, "session", "run") if c in columns]
            table = pd.read_csv(
                path,
                sep=sep,
                index_col=False,
                dtype=dict.fromkeys(verbatim, str),
                keep_default_na=False,
                na_values={c: _NA_VALUES for c in columns if c not in verbatim},
            )
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} is not UTF-8 text (line {_first_non_utf8_line(path)}); save it as UTF-8 "
            "(e.g. 'Save As... CSV UTF-8', or iconv -f latin1 -t utf-8)"
        ) from err
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        raise DataError(
            f"{path}: a row has more fields than the header ({str(err).strip()}); "
            "fix that row, or quote values that hold the separator"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path} is empty; it needs a header row and one row per scan") from err
    if len(table.columns) == 1 and sep == "\t" and "," in table.columns[0]:
        raise DataError(
            f"{path} looks comma-separated but is read as a tab-separated BIDS table: "
            "convert it to tabs, or rename it to .csv"
        )
    return table


def _first_non_utf8_line(path: Path) -> int:
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 0


def row_positions(table: pd.DataFrame, keys: pd.DataFrame, source: str) -> np.ndarray:
    """Positions in ``table`` of the rows of ``keys``, matched on participant_id (and session
    where both have it), in the order of ``keys``.

    Raises:
        DataError: no participant_id column, or a row of ``keys`` absent from ``table``.
    """
    columns = [c for c in (ID_COLUMN, "session") if c in keys.columns and c in table.columns]
    if ID_COLUMN not in columns:
        raise DataError(f"{source}: needs a {ID_COLUMN!r} column to select rows")
    position = {row: i for i, row in enumerate(table[columns].astype(str).itertuples(False, None))}
    wanted = list(keys[columns].astype(str).itertuples(False, None))
    missing = [row for row in wanted if row not in position]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} rows are not in the table, e.g. {missing[:3]}; "
            "the split was made for another table (rerun the splits)"
        )
    return np.array([position[row] for row in wanted], dtype=int)


def check_label_column(table: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """The label column as float64, with every row finite; raises DataError naming rows."""
    if column not in table.columns:
        raise DataError(
            f"{source}: no column {column!r}; the table has {list(table.columns)}. "
            "Set the label to one of these."
        )
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        ids = table[ID_COLUMN].iloc[bad[:5]].tolist() if ID_COLUMN in table else bad[:5].tolist()
        raw = table[column].iloc[bad[:5]].tolist()
        raise DataError(
            f"{source}: column {column!r} has {len(bad)} missing or non-numeric values, "
            f"e.g. rows {bad[:5].tolist()} (participants {ids}, values {raw}). "
            "Fix or drop those rows."
        )
    return values


class ScanDataset(Dataset):
    """Scans of an array with the matching rows of its participants table.

    Args:
        array: path of the (N, C, X, Y, Z) ``.npy``.
        table: path of the participants table, one row per array row, same order.
        label: column(s) used as label (numeric); None for no label.
        indices: subset of rows to expose (e.g. a split); all rows by default.
        labels: labels computed by the caller, one per table row (overrides ``label``).

    Scans come out as float32. With ``compact`` set (the engine does so on a GPU), rows of
    a float16 array stay float16: half the bytes through the loader's workers, pinned
    memory and the host-to-device copy; the engine casts them on the device.

    Raises:
        DataError: row counts differ, no participant_id column, duplicated
            (participant_id, session) rows, or a missing or non-finite label.
    """

    def __init__(
        self,
        array: str | os.PathLike,
        table: str | os.PathLike,
        label: str | Sequence[str] | None = None,
        indices: Sequence[int] | None = None,
        labels: np.ndarray | None = None,
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
        if ID_COLUMN not in self.table.columns:
            raise DataError(f"{table}: no {ID_COLUMN!r} column to align rows with scans")
        keys = [ID_COLUMN, "session"] if "session" in self.table.columns else [ID_COLUMN]
        duplicated = self.table.duplicated(keys, keep=False)
        if duplicated.any():
            rows = self.table.loc[duplicated, keys].head(4).to_dict("records")
            raise DataError(f"{table}: duplicated {keys} rows, e.g. {rows}; keep one per scan")
        if labels is not None:
            self.labels = np.asarray(labels)
        elif label is None:
            self.labels = np.zeros(len(self.table))
        elif isinstance(label, str):
            self.labels = check_label_column(self.table, label, source)
        else:
            self.labels = np.stack([check_label_column(self.table, c, source) for c in label], 1)
        self.indices = np.arange(len(self.array)) if indices is None else np.asarray(indices)

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
                f"{self.array.path}: row {row} ({self.table[ID_COLUMN].iloc[row]}) has "
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
