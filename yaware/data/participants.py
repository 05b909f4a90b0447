"""Participants tables (BIDS ``participants.tsv`` or CSV) and the selection of their rows."""

import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from yaware.errors import DataError

log = logging.getLogger(__name__)

ID_COLUMN = "participant_id"
# BIDS names a table's session column ``session_id`` (sessions.tsv, and the tables merged
# from them); this package's tables, like BHB-10K's, name it ``session``.
SESSION_COLUMN, BIDS_SESSION_COLUMN = "session", "session_id"
MISSING = "n/a"  # how :func:`as_text` writes a missing value

_NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "None"]


def as_text(values: pd.Series) -> pd.Series:
    """A column's values as text, a missing one as ``n/a`` (BIDS's word for it).

    ``astype(str)`` alone keeps a missing value missing under pandas >= 3, and a NaN among
    strings breaks sorting, stratum codes and contingency tables.
    """
    return values.astype(object).where(values.notna(), MISSING).astype(str)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a participants table: tab-separated (BIDS) unless the name ends in .csv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; check the path")
    with path.open("rb") as file:
        head = file.read(4)
    if head in _WORKBOOK_MAGIC:
        raise DataError(
            f"{path} is a spreadsheet workbook, not a text table: export it as tab-separated "
            "text (participants.tsv; 'Save As... Text (Tab delimited)', or "
            "pandas.read_excel(path).to_csv('participants.tsv', sep='\\t', index=False))"
        )
    sep = "," if path.suffix == ".csv" else "\t"
    # UTF-16 for a file that opens with its byte-order mark (a spreadsheet's "Unicode
    # Text"), else UTF-8 (pandas skips UTF-8's own mark).
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8"
    table = _parse(path, sep, encoding)
    if blank := _blank_lines(table, path):  # read again: their empty cells typed the columns
        table = _parse(path, sep, encoding, skip=[line - 1 for line in blank])
    if len(table.columns) == 1 and sep == "\t" and "," in table.columns[0]:
        raise DataError(
            f"{path} looks comma-separated but is read as a tab-separated BIDS table: "
            "convert it to tabs, or rename it to .csv"
        )
    # A spreadsheet's stray spaces around a header ("age ") would hide the column.
    table.columns = [str(c).strip() for c in table.columns]
    repeated = table.columns[table.columns.duplicated()].unique().tolist()
    if repeated:
        raise DataError(f"{path}: columns {repeated} appear more than once; keep one of each")
    if BIDS_SESSION_COLUMN in table and SESSION_COLUMN not in table:
        table = table.rename(columns={BIDS_SESSION_COLUMN: SESSION_COLUMN})
    # BIDS writes a missing value "n/a": in a session or run column it means none (a
    # subject without sessions beside others with them). Its "/" can be in no BIDS label.
    for column in (SESSION_COLUMN, "run"):
        if column in table:
            table[column] = table[column].replace({"n/a": "", "N/A": ""})
    return table


def _parse(path: Path, sep: str, encoding: str, skip: Sequence[int] = ()) -> pd.DataFrame:
    """The table's text as a frame, ids verbatim; its faults named with the fix."""
    try:
        with warnings.catch_warnings():
            # A row longer than the header: pandas would silently shift the columns.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            columns = pd.read_csv(path, sep=sep, nrows=0, encoding=encoding).columns
            # Identifiers are text, kept verbatim: an id like "nan" or "NA" is not missing.
            verbatim = [
                c
                for c in columns
                if str(c).strip() in (ID_COLUMN, SESSION_COLUMN, BIDS_SESSION_COLUMN, "run")
            ]
            table = pd.read_csv(
                path,
                sep=sep,
                encoding=encoding,
                index_col=False,
                dtype=dict.fromkeys(verbatim, str),
                keep_default_na=False,
                na_values={c: _NA_VALUES for c in columns if c not in verbatim},
                # Row i is then line i + 2, for _blank_lines to name.
                skip_blank_lines=False,
                skiprows=list(skip),
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
    return table


def _blank_lines(table: pd.DataFrame, path: Path) -> list[int]:
    """The lines of ``table``'s rows whose every cell is empty (tabs or commas only, as a
    spreadsheet exports rows it once used), with a log line naming them."""
    text = table.astype(str).apply(lambda column: column.str.strip())
    blank = (table.isna() | (text == "") | (text == "nan")).all(axis=1).to_numpy()
    lines = [int(i) + 2 for i in np.flatnonzero(blank)]
    if lines:
        shown = ", ".join(map(str, lines[:10])) + (" ..." if len(lines) > 10 else "")
        log.warning(
            "%s: %d blank rows left out (lines %s: empty cells only)", path, len(lines), shown
        )
    return lines


# How workbooks open: a zip archive (.xlsx, .ods) or an OLE2 compound file (.xls).
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")


def missing_column(table: pd.DataFrame, column: str, source: str, fix: str) -> DataError:
    """The error for a table without ``column``, naming its columns and ``fix`` (a clause:
    "set the label to one of them"), and first the column that differs only in case
    (BIDS names are lower case: "Age" for "age")."""
    alike = [c for c in table.columns if c.lower() == column.lower()]
    message = f"{source}: no {column!r} column; the table has {list(table.columns)}"
    if alike and column != column.lower() and alike[0] == alike[0].lower():
        # The table follows BIDS; the name asked for ("BMI", from a setting) does not.
        return DataError(f"{message}: {fix} ({alike[0]!r} differs only in case)")
    if alike:
        return DataError(
            f"{message}: rename {alike[0]!r} to {column!r} (BIDS column names are lower case), "
            f"or {fix}"
        )
    return DataError(f"{message}: {fix}")


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
    if ID_COLUMN not in keys.columns:
        raise DataError(f"{source}: needs a {ID_COLUMN!r} column to select rows")
    if ID_COLUMN not in table.columns:
        raise DataError(
            f"{source}: the table it selects from has no {ID_COLUMN!r} column (its columns: "
            f"{list(table.columns)}); add the ids, or give each side its own array and table"
        )
    position = {row: i for i, row in enumerate(table[columns].astype(str).itertuples(False, None))}
    wanted = list(keys[columns].astype(str).itertuples(False, None))
    missing = [row for row in wanted if row not in position]
    if missing:
        raise DataError(
            f"{source}: {len(missing)} rows are not in the table, e.g. {missing[:3]}; "
            "the split was made for another table (rerun the splits)"
        )
    return np.array([position[row] for row in wanted], dtype=int)


def not_a_number(value: object) -> str:
    """Why a table cell is not a finite number, to follow its column's name ("is missing",
    "is not a number: '40,5' has a decimal comma, write 40.5"); "" for a number."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "is missing"
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if np.isfinite(number):
        return ""
    return f"is not a number: {_number_hint(value) or repr(str(value).strip())}"


def _number_hint(value: object) -> str:
    """How to write ``value`` as a number, where it is one in another notation; else ""."""
    return _decimal_comma(value) or _dicom_age(value) or _binned(value)


def _decimal_comma(value: object) -> str:
    """ "'40,5' has a decimal comma, write 40.5" for such a value, else ""."""
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+,\d+", text):
        return f"{text!r} has a decimal comma, write {text.replace(',', '.')}"
    return ""


# Days per unit of a DICOM Age String (PatientAge, "045Y"), for an age in years.
_DICOM_AGE_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}


def _dicom_age(value: object) -> str:
    """ "'045Y' is a DICOM age string, write 45 (years)" for such a value (tables made from
    DICOM headers carry PatientAge as nnnD/W/M/Y), else ""."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d{1,3})\s*([DWMY])", text, flags=re.IGNORECASE)
    if not match:
        return ""
    years = int(match[1]) * _DICOM_AGE_DAYS[match[2].upper()] / 365.25
    return f"{text!r} is a DICOM age string, write {years:.4g} (years)"


def _binned(value: object) -> str:
    """Why an age bin is no number, for "26-30" (HCP's open-access tables bin ages) or
    "89+" (how BIDS and HIPAA de-identify ages of 89 and over), else ""."""
    text = str(value).strip()
    bounds = re.fullmatch(r"(\d+(?:\.\d+)?)\s*[-\u2013]\s*(\d+(?:\.\d+)?)", text)
    if bounds and float(bounds[1]) < float(bounds[2]):
        middle = (float(bounds[1]) + float(bounds[2])) / 2
        return (
            f"{text!r} is a range (a bin, as in HCP's open-access table): write the exact "
            f"value, or the middle, {middle:g}, if the bin's width is precise enough for you"
        )
    if re.fullmatch(r"\d+(?:\.\d+)?\s*\+", text):
        return (
            f"{text!r} is only a lower bound (a de-identified age, as BIDS writes 89+): "
            "write the exact value, or leave the scan out"
        )
    return ""


def check_label_column(table: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """The label column as float64, with every row finite; raises DataError naming rows."""
    if column not in table.columns:
        raise missing_column(table, column, source, "set the label to one of them")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        ids = table[ID_COLUMN].iloc[bad[:5]].tolist() if ID_COLUMN in table else bad[:5].tolist()
        raw = table[column].iloc[bad[:5]].tolist()
        hint = next(filter(None, map(_number_hint, raw)), "")
        raise DataError(
            f"{source}: column {column!r} has {len(bad)} missing or non-numeric values, "
            f"e.g. rows {bad[:5].tolist()} (participants {ids}, values {raw}). "
            + (f"{hint}. " if hint else "")
            + "Fix or drop those rows."
        )
    return values


def category_text(values: pd.Series) -> pd.Series:
    """A categorical label's values as comparable text: a number as its float (``1``,
    ``1.0`` and ``"1"`` are one category), text stripped and without case (``M`` and
    ``m``); a missing value, or a NaN or infinite number, is None."""

    def one(value: object) -> str | None:
        if value is None or value is pd.NA:
            return None
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return str(value).strip().casefold() or None
        return repr(number) if np.isfinite(number) else None

    return values.map(one).astype(object)


def category_codes(columns: Sequence[pd.Series]) -> dict[str, int]:
    """One code per category seen in any of ``columns`` (every table pooled in a run, so a
    category has the same code in each), in sorted order."""
    seen = set()
    for values in columns:
        seen.update(v for v in category_text(values) if isinstance(v, str))
    return {category: code for code, category in enumerate(sorted(seen))}


def check_category_column(
    table: pd.DataFrame, column: str, source: str, codes: dict[str, int]
) -> np.ndarray:
    """A categorical label as the float64 codes of ``codes``; raises DataError naming the
    rows without a value."""
    if column not in table.columns:
        raise missing_column(table, column, source, "set the label to one of them")
    text = category_text(table[column])
    bad = np.flatnonzero(text.isna().to_numpy())
    if len(bad):
        ids = table[ID_COLUMN].iloc[bad[:5]].tolist() if ID_COLUMN in table else bad[:5].tolist()
        raise DataError(
            f"{source}: column {column!r} (a categorical kernel's label) has {len(bad)} "
            f"missing values, e.g. rows {bad[:5].tolist()} (participants {ids}). Fix or drop "
            "those rows."
        )
    return text.map(codes).to_numpy(dtype=np.float64)
