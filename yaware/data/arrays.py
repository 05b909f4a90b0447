"""Row-wise reading and writing of (N, ...) ``.npy`` arrays through memory maps.

Rows are copied in or out one at a time and their pages dropped from the process
(``madvise(MADV_DONTNEED)``), so resident memory stays flat whatever N is.
"""

import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yaware.errors import DataError


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
                "np.save(path, np.load(path).astype(np.float32)), divided by the scale the "
                "values were stored with (integer grey-matter maps are often x 1000)"
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
