"""The array dataset: alignment checks, float16 storage, flat memory."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli, write_config
from yaware.data.arrays import NpyArray
from yaware.data.dataset import EpochSampler, ScanDataset
from yaware.errors import DataError
from yaware.train.common import to_device


def _write(tmp_path, n=5, dtype=np.float32, table=None):
    arr = np.random.default_rng(0).normal(size=(n, 1, 4, 5, 3)).astype(dtype)
    np.save(tmp_path / "x.npy", arr)
    if table is None:
        table = pd.DataFrame(
            {"participant_id": [f"s{i}" for i in range(n)], "age": 20.0 + np.arange(n)}
        )
    table.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    return arr, tmp_path / "x.npy", tmp_path / "p.tsv"


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rows_and_labels(tmp_path, dtype):
    arr, x, p = _write(tmp_path, dtype=dtype)
    ds = ScanDataset(x, p, label="age", indices=[3, 1])
    scan, label = ds[0]
    assert scan.dtype == torch.float32 and scan.shape == (1, 4, 5, 3)
    assert np.array_equal(scan.numpy(), arr[3].astype(np.float32))
    assert float(label) == 23.0 and len(ds) == 2


@pytest.mark.parametrize(
    ("stored", "delivered"), [(np.float16, torch.float16), (np.float32, torch.float32)]
)
def test_compact_rows_travel_as_stored_and_cast_back_exactly(tmp_path, stored, delivered):
    arr, x, p = _write(tmp_path, dtype=stored)
    ds = ScanDataset(x, p, label="age")
    ds.compact = True  # what the engine sets on a GPU
    scan, _ = ds[2]
    assert scan.dtype == delivered
    on_device = to_device(scan, torch.device("cpu"))
    assert on_device.dtype == torch.float32
    assert np.array_equal(on_device.numpy(), arr[2].astype(np.float32))


def test_row_count_mismatch_names_both_files(tmp_path):
    table = pd.DataFrame({"participant_id": ["a", "b"], "age": [1.0, 2.0]})
    _, x, p = _write(tmp_path, table=table)
    with pytest.raises(DataError, match=r"p.tsv has 2 rows but .*x.npy has 5 scans"):
        ScanDataset(x, p)


@pytest.mark.parametrize(
    ("ages", "message"),
    [
        (["20", "x", "30", "31", "32"], r"1 missing or non-numeric values, e.g. rows \[1\]"),
        ([20, None, 30, np.inf, 32], r"2 missing or non-numeric values, e.g. rows \[1, 3\]"),
        (["20", "30,5", "31", "32", "33"], r"'30,5' has a decimal comma, write 30.5\. Fix"),
        (["20", "030Y", "31", "32", "33"], r"'030Y' is a DICOM age string, write 30 \(years"),
        (["20", "26-30", "31", "32", "33"], r"'26-30' is a range .* or the middle, 28, if"),
        (["20", "89+", "31", "32", "33"], r"'89\+' is only a lower bound \(a de-identified"),
    ],
    ids=["text", "missing_and_inf", "decimal_comma", "dicom_age", "age_bin", "capped_age"],
)
def test_bad_labels_name_the_rows(tmp_path, ages, message):
    table = pd.DataFrame({"participant_id": list("abcde"), "age": ages})
    _, x, p = _write(tmp_path, table=table)
    with pytest.raises(DataError, match=message):
        ScanDataset(x, p, label="age")
    with pytest.raises(DataError, match="no 'sex' column; the table has"):
        ScanDataset(x, p, label="sex")


def test_duplicated_rows_and_tables_without_ids(tmp_path):
    table = pd.DataFrame(
        {"participant_id": list("abcca"), "session": list("11121"), "age": range(5)}
    )
    _, x, p = _write(tmp_path, table=table)
    with pytest.raises(DataError, match="duplicated"):
        ScanDataset(x, p)
    # The original repository's metadata.csv: one label per array row, no ids.
    table = pd.DataFrame({"age": [50.0, 20.0, 31.0, 44.0, 62.0]})
    _, x, p = _write(tmp_path, table=table)
    dataset = ScanDataset(x, p, label="age")
    assert [float(dataset[i][1]) for i in range(5)] == [50.0, 20.0, 31.0, 44.0, 62.0]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["participant_id", "Age"], "rename 'Age' to 'age' (BIDS column names are lower case)"),
        (["participant_id", "age", "age "], "columns ['age'] appear more than once"),
        ([" participant_id", "age "], ""),  # stray spaces around names are dropped
    ],
)
def test_column_names_differing_in_case_or_spaces(tmp_path, header, message):
    table = pd.DataFrame([[f"s{i}", *[30 + i] * (len(header) - 1)] for i in range(5)])
    _, x, p = _write(tmp_path, table=table.set_axis(header, axis=1))
    if not message:
        assert list(ScanDataset(x, p, label="age").table.columns) == ["participant_id", "age"]
        return
    with pytest.raises(DataError, match=re.escape(message)):
        ScanDataset(x, p, label="age")


def test_comma_separated_tsv_is_explained(tmp_path):
    _, x, p = _write(tmp_path)
    pd.read_csv(p, sep="\t").to_csv(p, index=False)
    with pytest.raises(DataError, match="looks comma-separated"):
        ScanDataset(x, p)


def test_bad_arrays(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((3, 4, 5, 6), np.float32))
    with pytest.raises(DataError, match=r"expected \(N, C, X, Y, Z\)"):
        NpyArray(tmp_path / "flat.npy")
    _, x, _ = _write(tmp_path)
    data = x.read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError, match="truncated"):
        NpyArray(tmp_path / "cut.npy")
    (tmp_path / "junk.npy").write_bytes(b"hello")
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        NpyArray(tmp_path / "junk.npy")


def test_epoch_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(50, seed=1), EpochSampler(50, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(4)
    assert list(a) != list(b)


def _pretrain_cli(tmp_path, x, p, **keys):
    """``yaware pretrain`` of a tinycnn for one epoch on the array ``x`` and table ``p``."""
    keys = {"encoder": "tinycnn", "batch_size": 4, "epochs": 1, "augmentation": "none"} | keys
    config = write_config(
        tmp_path / "pre.yaml",
        train_data=str(x),
        train_table=str(p),
        out_dir=str(tmp_path / "run"),
        **keys,
    )
    return run_cli("pretrain", "--config", str(config))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_nan_row_stops_training_with_the_file_row_and_subject(tmp_path, workers):
    arr, x, p = _write(tmp_path, n=12)
    arr[5, 0, 1, 2, 1] = np.nan
    np.save(x, arr)
    done = _pretrain_cli(tmp_path, x, p, num_workers=workers)
    assert done.returncode == 2, done.stderr
    assert f"{x}: row 5 (s5) has 1 NaN or infinite voxels" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "best.pt").exists()


# Tables as spreadsheets and hand edits leave them: each breaks the run with the file,
# the line and the fix, never a silent column shift.
BROKEN_TABLES = {
    "latin1": (
        "participant_id\tage\tsite\ns0\t20\tMontreal\ns1\t21\tMontr\xe9al\n".encode("latin-1"),
        "is not UTF-8 text (line 3); save it as UTF-8",
    ),
    "row_longer_than_header": (
        b"participant_id\tage\ns0\t20\textra\ns1\t21\n",
        "a row has more fields than the header",
    ),
    "later_row_longer": (
        b"participant_id\tage\ns0\t20\ns1\t21\t7\n",
        "Expected 2 fields in line 3, saw 3",
    ),
    "empty": (b"", "is empty; it needs a header row"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TABLES))
def test_a_broken_table_stops_pretraining_with_the_file_and_line(tmp_path, case):
    content, message = BROKEN_TABLES[case]
    _, x, p = _write(tmp_path, n=2)
    p.write_bytes(content)
    done = _pretrain_cli(tmp_path, x, p)
    assert done.returncode == 2, done.stderr
    assert str(p) in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "run").glob("*.pt"))


# UTF-8 with its byte-order mark, and UTF-16 with its mark (a spreadsheet's "Unicode Text"
# export: little-endian on Windows), with Windows line ends.
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path, encoding):
    _write(tmp_path, n=2)
    text = "participant_id\tage\r\ns0\t20\r\ns1\t21.5\r\n"
    mark = "\ufeff" if encoding == "utf-16-be" else ""  # that codec writes none itself
    (tmp_path / "p.tsv").write_bytes((mark + text).encode(encoding))
    ds = ScanDataset(tmp_path / "x.npy", tmp_path / "p.tsv", label="age")
    assert list(ds.table["participant_id"]) == ["s0", "s1"]
    assert [ds[i][1] for i in range(2)] == [20.0, 21.5]


# Arrays as other tools save them: refused by name with the line that converts them, or
# read as they are (float64 is cast on the way in).
ARRAYS = {
    "int16": (lambda a: (a * 100).astype(np.int16), "holds int16; expected float32 or float16"),
    "big_endian": (lambda a: a.astype(">f4"), "holds >f4; expected float32 or float16"),
    "fortran": (lambda a: np.asfortranarray(a), "is stored in Fortran order; save it C-ordered"),
    "float64": (lambda a: a.astype(np.float64), None),
}


@pytest.mark.parametrize("case", sorted(ARRAYS))
def test_arrays_saved_by_other_tools_are_read_or_refused_with_the_fix(tmp_path, case):
    make, message = ARRAYS[case]
    arr, x, p = _write(tmp_path, n=8)
    np.save(x, make(arr.astype(np.float32)))
    done = _pretrain_cli(tmp_path, x, p)
    if message is None:
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "run" / "best.pt").is_file()
        return
    assert done.returncode == 2, done.stderr
    assert f"{x} {message}" in done.stderr and "np.save(path, " in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run" / "best.pt").exists()
