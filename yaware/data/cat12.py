"""CAT12 derivatives: where the files are and what the report XML holds.

Layout (BIDS-like, as CAT12 and brainprep write it)::

    <root>/sub-<id>/ses-<ses>/anat/mri/mwp1[u|r]sub-<id>_ses-<ses>[_run-<r>]_T1w.nii[.gz]
    <root>/sub-<id>/ses-<ses>/anat/report/cat_[u|r]sub-<id>_ses-<ses>[_run-<r>]_T1w.xml

or with both files in ``anat/`` itself: CAT12 writes no mri/ and report/ folders when its
``extopts.subfolders`` is off, nor, since CAT12.8, for an input in a BIDS tree
(``cat_io_subfolders.m``). The ``u`` prefix is brainprep's copy of the input, ``r`` CAT12's
longitudinal realignment. A dataset without sessions drops the ``ses-<ses>`` folder and
entity (``<root>/sub-<id>/anat/mri/mwp1sub-<id>_T1w.nii``), as CAT12 writes it next to a
BIDS ``sub-<id>/anat/sub-<id>_T1w.nii``. CAT12 run on one folder of BIDS-named inputs
writes ``<root>/mri/`` and ``<root>/report/`` (a flat root: no ``sub-*`` folders), where
each scan is looked for by the same names. Identifiers are taken with or without their BIDS
prefix: participant_id ``sub-01`` or ``01``, session ``ses-1`` or ``1``, and compared in
any Unicode normal form (macOS writes ``Zoë`` decomposed, NFD; a table holds it composed,
NFC). A map whose name
carries other BIDS entities (``_acq-mprage``, ``_rec-norm``, a run the table does not name)
is used when it is the only one of its subject and session; its report is the one CAT12
writes for the same input, ``cat_<name of the map without mwp1>.xml``.

``cat_*.xml`` has a root ``<S>`` with ``<qualityratings>`` (marks from 0.5 = best to
10.5: NCR, ICR, res_RMS, IQR) and ``<subjectmeasures>`` (vol_TIV, vol_abs_CGW in ml).
"""

import functools
import math
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from yaware.io import write_atomic


def _entities(subject: str, session: str, run: str | None) -> list[str]:
    """The BIDS entities of a scan, ``["sub-01", "ses-1", "run-2"]``; no session, no ``ses-``."""
    parts = [f"sub-{subject.removeprefix('sub-')}"]
    if session:
        parts.append(f"ses-{session.removeprefix('ses-')}")
    if run:
        parts.append(f"run-{run.removeprefix('run-')}")
    return parts


def _stem(subject: str, session: str, run: str | None = None) -> str:
    return "_".join([*_entities(subject, session, run), "T1w"])


def _anat(root: str | os.PathLike, subject: str, session: str) -> Path:
    return Path(root).joinpath(*_entities(subject, session, None), "anat")


def image_path(root: str | os.PathLike, subject: str, session: str, run: str | None = None) -> Path:
    """Where a writer puts the modulated GM map (plain CAT12 naming, gzipped)."""
    return _anat(root, subject, session) / "mri" / f"mwp1{_stem(subject, session, run)}.nii.gz"


def report_path(
    root: str | os.PathLike, subject: str, session: str, run: str | None = None
) -> Path:
    return _anat(root, subject, session) / "report" / f"cat_{_stem(subject, session, run)}.xml"


@dataclass
class Found:
    """Files found for one scan; ``problem`` says why the search failed, if it did."""

    image: Path | None = None
    report: Path | None = None
    problem: str = ""


# CAT12 names the map of input <stem>.nii mwp1<stem>.nii and its report cat_<stem>.xml,
# whatever <stem> is ...
_CAT12_MAP = re.compile(r"^mwp1(?P<stem>.+?)\.nii(?:\.gz)?$")
# ... and a BIDS T1w input gives <stem> = [u|r]sub-<id>[_<key>-<value>...]_T1w.
_MAP_NAME = re.compile(r"^mwp1(?P<stem>[ur]?(?:[A-Za-z0-9]+-[A-Za-z0-9]+_)+T1w)\.nii(?:\.gz)?$")
_INPUT_PREFIXES = ("", "u", "r")
_EXTENSIONS = (".nii.gz", ".nii")
# Other CAT12 outputs of a scan, by the prefix before its input's name, for the hint given
# when its mwp1 map is missing.
_OTHER_OUTPUTS = (
    (re.compile(r"s[0-9.]+mwp1"), "smoothed grey matter (the pipeline takes it unsmoothed)"),
    (re.compile(r"m0wp1"), "grey matter modulated for non-linear effects only"),
    (re.compile(r"wp1"), "grey matter not modulated"),
    (re.compile(r"p1"), "grey matter in native space"),
    (re.compile(r"(?:m0?)?w?p[23]"), "white matter or CSF"),
)


def _map_folders(anat: Path) -> tuple[Path, Path]:
    """Where CAT12 puts a scan's map: ``anat/mri``, or ``anat`` without subfolders."""
    return anat / "mri", anat


def _entity_values(stem: str) -> dict[str, str]:
    """``{"sub": "01", "acq": "mprage"}`` of ``[u|r]sub-01_acq-mprage_T1w``."""
    pairs = re.sub(r"^[ur](?=sub-)", "", stem).split("_")[:-1]
    return dict(pair.split("-", 1) for pair in pairs)


def report_for(image: Path) -> Path | None:
    """The report CAT12 writes for a map: ``<anat>/report/cat_<input stem>.xml`` beside an
    ``mri/`` folder, else ``cat_<input stem>.xml`` beside the map (the first that exists)."""
    match = _CAT12_MAP.match(image.name)
    if match is None:
        return None
    name = f"cat_{match['stem']}.xml"
    candidates = [image.parent / name]
    if image.parent.name == "mri":
        candidates.insert(0, image.parent.parent / "report" / name)
    return next((path for path in candidates if path.exists()), candidates[0])


def _maps_with_other_entities(
    anat: Path, subject: str, session: str, run: str | None
) -> list[Path]:
    """Maps of this subject and session (and run, if named) whose names carry entities
    beyond those."""
    wanted = {"sub": subject.removeprefix("sub-"), "ses": session.removeprefix("ses-")}
    if run:
        wanted["run"] = run.removeprefix("run-")
    found = []
    for folder in _map_folders(anat):
        for path in sorted(folder.glob("mwp1*T1w.nii*")):
            match = _MAP_NAME.match(path.name)
            if match is None or not path.exists():
                continue
            entities = _entity_values(match["stem"])
            if entities.get("ses", "") == wanted["ses"] and all(
                entities.get(key) == value for key, value in wanted.items() if key != "ses"
            ):
                found.append(path)
    return found


def find_scan(root: str | os.PathLike, subject: str, session: str, run: str | None = None) -> Found:
    """Search the layout for a scan's map and report (``mri/`` and ``report/`` folders or
    none, 'u' or 'r' prefix, .nii or .nii.gz)."""
    flat = flat_layout(root)
    if not flat:
        subject, session = _as_on_disk(Path(root), subject, session)
    stem = _stem(subject, session, run)
    anat = Path(root) if flat else _anat(root, subject, session)
    images = [
        folder / f"mwp1{prefix}{stem}{ext}"
        for folder in _map_folders(anat)
        for prefix in _INPUT_PREFIXES
        for ext in _EXTENSIONS
    ]
    broken = [p for p in images if p.is_symlink() and not p.exists()]
    images = [p for p in images if p.exists()]
    by_entities = not images and not broken
    if by_entities:
        images = _maps_with_other_entities(anat, subject, session, run)
    reports = [
        folder / f"cat_{prefix}{stem}.xml"
        for folder in (anat / "report", anat)
        for prefix in _INPUT_PREFIXES
    ]
    if images:
        reports.insert(0, report_for(images[0]))
    reports = [p for p in reports if p is not None and p.exists()]
    found = Found(image=images[0] if images else None, report=reports[0] if reports else None)
    if len(images) > 1:
        names = [str(p.relative_to(anat)) for p in images]
        found.problem = f"several maps for one scan: {names}; keep one"
        if by_entities:
            found.problem += ", or choose one with a 'run' column (or a 'path' column)"
    elif not images and broken:
        target = os.readlink(broken[0])
        found.problem = f"{broken[0].name} is a link to {target}, which does not exist"
    elif not images:
        found.problem = (
            f"no mwp1 map in {anat / 'mri'} or {anat} (looked for mwp1[u|r]{stem}.nii[.gz])"
        )
        layout = "" if anat == Path(root) else _layout_hint(Path(root), subject, session)
        found.problem += _other_outputs_hint(anat, stem) or layout
    return found


def _as_on_disk(root: Path, subject: str, session: str) -> tuple[str, str]:
    """The subject and session as their folders spell them, where those differ from the
    table's only in Unicode normal form; else as given."""
    if subject.isascii() and session.isascii():
        return subject, session
    for form in ("NFC", "NFD"):
        spelt = unicodedata.normalize(form, subject), unicodedata.normalize(form, session)
        if _anat(root, *spelt).parent.is_dir():
            return spelt
    return subject, session


def _other_outputs_hint(anat: Path, stem: str) -> str:
    """What CAT12 wrote for this scan instead of its mwp1 map, if anything."""
    kinds: dict[str, list[str]] = {}
    for folder in _map_folders(anat):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            name = re.sub(r"\.nii(?:\.gz)?$", "", path.name)
            if name == path.name or not name.endswith(stem):
                continue
            output = name[: -len(stem)]
            output = output[:-1] if output[-1:] in ("u", "r") else output  # the input's prefix
            for pattern, kind in _OTHER_OUTPUTS:
                if pattern.fullmatch(output):
                    kinds.setdefault(kind, []).append(path.name)
                    break
    if not kinds:
        return ""
    found = "; ".join(f"{', '.join(names)} ({kind})" for kind, names in kinds.items())
    return (
        f"; CAT12 wrote {found}, but the pipeline reads the modulated, normalised grey "
        "matter: rerun CAT12 with its output 'grey matter: modulated normalized' (mwp1), or "
        "point a 'path' column at the maps you mean"
    )


def _loose_id(name: str) -> str:
    """An id without its sub- prefix, case and leading zeros: what a spreadsheet keeps of it."""
    bare = name.removeprefix("sub-").lower()
    return (bare.lstrip("0") or "0") if bare.isdigit() else bare


@functools.lru_cache(maxsize=8)
def _subject_folders(root: Path, modified: float) -> dict[str, list[str]]:
    """The sub-* folders of ``root`` by loose id (``modified``, root's mtime, renews it)."""
    folders: dict[str, list[str]] = {}
    for path in sorted(root.glob("sub-*")):
        folders.setdefault(_loose_id(path.name), []).append(path.name)
    return folders


def _layout_hint(root: Path, subject: str, session: str) -> str:
    """Why a scan's folder was not where the table says, when its neighbours tell."""
    subject_dir = root / _entities(subject, "", None)[0]
    if not subject_dir.is_dir():
        hint = f"; there is no folder {subject_dir.name} under {root}"
        folders = _subject_folders(root, root.stat().st_mtime) if root.is_dir() else {}
        alike = folders.get(_loose_id(subject_dir.name), [])
        if not alike:
            return hint
        folder = alike[0]
        if not subject.removeprefix("sub-").isdigit():
            return f"{hint}, but there is {folder}: ids are case-sensitive"
        if folder.removeprefix("sub-").startswith("0"):
            return (
                f"{hint}, but there is {folder}: the table's ids lost their leading zeros "
                "(a spreadsheet read them as numbers); write them as the folders do"
            )
        return f"{hint}, but there is {folder}: write the ids as the folders do"
    sessions = sorted(p.name for p in subject_dir.glob("ses-*") if p.is_dir())
    if not session and sessions:
        return (
            f"; the subject has session folders {sessions}: "
            "add a 'session' column (BIDS: 'session_id')"
        )
    if session and not (subject_dir / _entities(subject, session, None)[1]).is_dir():
        if sessions:
            return f"; the subject's session folders are {sessions}: check the 'session' column"
        return (
            f"; {subject_dir.name} has no session folders: leave its 'session' empty "
            "(or drop the column)"
        )
    return ""


def read_report(path: str | os.PathLike) -> dict[str, float]:
    """Quality marks and TIV from a ``cat_*.xml``; missing values are NaN."""
    root = ET.parse(path).getroot()
    values: dict[str, float] = {}
    for key in ("NCR", "ICR", "IQR", "res_RMS"):
        values[key] = _number(root.find(f"qualityratings/{key}"))
    values["vol_TIV"] = _number(root.find("subjectmeasures/vol_TIV"))
    return values


def _number(element: ET.Element | None) -> float:
    if element is None or element.text is None:
        return math.nan
    try:
        return float(element.text.strip().strip("[]").split()[0])
    except (ValueError, IndexError):
        return math.nan


def write_report(path: str | os.PathLike, values: dict[str, float]) -> None:
    """A ``cat_*.xml`` with CAT12's three groups; ``values`` as made by the simulator."""
    root = ET.Element("S")
    measures = ET.SubElement(root, "qualitymeasures")
    ratings = ET.SubElement(root, "qualityratings")
    for key in ("res_RMS", "NCR", "ICR"):
        # Raw measures are on their own scales; a rough inverse of the mark is enough here.
        ET.SubElement(measures, key).text = f"{values[key] / 20:.6f}"
        ET.SubElement(ratings, key).text = f"{values[key]:.6f}"
    ET.SubElement(ratings, "IQR").text = f"{values['IQR']:.6f}"
    subject = ET.SubElement(root, "subjectmeasures")
    ET.SubElement(subject, "vol_TIV").text = f"{values['vol_TIV']:.4f}"
    volumes = [values["vol_CSF"], values["vol_GM"], values["vol_WM"], 0.0]
    ET.SubElement(subject, "vol_abs_CGW").text = "[" + " ".join(f"{v:.4f}" for v in volumes) + "]"
    relative = [v / values["vol_TIV"] for v in volumes]
    ET.SubElement(subject, "vol_rel_CGW").text = "[" + " ".join(f"{v:.6f}" for v in relative) + "]"
    ET.indent(root)
    text = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root) + b"\n"
    write_atomic(path, lambda handle: handle.write(text))


# How far below a cat12_root without subjects to look for the folder meant, and how many
# folders to open at most (a root set to a large share must not stall the config check).
_SEARCH_DEPTH, _SEARCH_FOLDERS = 3, 500


def flat_layout(root: str | os.PathLike) -> bool:
    """Whether ``root`` is one folder that CAT12 segmented whole (``mri/`` and ``report/``
    beside the inputs, no ``sub-*`` folders): every scan's map is then under ``root/mri``."""
    root = Path(root)
    try:
        return _flat_layout(root, root.stat().st_mtime)
    except OSError:
        return False


@functools.lru_cache(maxsize=8)
def _flat_layout(root: Path, modified: float) -> bool:
    """:func:`flat_layout`, once per root (``modified``, its mtime, renews it): QC asks for
    every scan, and a flat root may hold thousands of inputs."""
    return not _holds_subjects(root) and (root / "mri").is_dir()


def root_problem(root: str | os.PathLike) -> str:
    """Why ``root`` cannot be a cohort's CAT12 derivatives folder, naming the folder meant
    where one above or below it holds the subjects; "" when it holds a ``sub-*`` folder,
    or is a folder that CAT12 segmented whole."""
    root = Path(root)
    if _holds_subjects(root) or flat_layout(root):
        return ""
    subject = next((p for p in (root, *root.parents) if p.name.startswith("sub-")), None)
    if subject is not None:
        return (
            f"{root} is inside the subject folder {subject.name}: set cat12_root: {subject.parent}"
        )
    below = _subjects_below(root)
    if below is not None:
        return f"{root} holds no sub-* folder, but {below} does: set cat12_root: {below}"
    return (
        f"{root} holds no sub-* folder; point cat12_root at the folder that holds them (or "
        "give every row of the table a path)"
    )


def _holds_subjects(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(e.name.startswith("sub-") and e.is_dir() for e in entries)
    except OSError:
        return False


def _subjects_below(root: Path) -> Path | None:
    """The first folder under ``root``, breadth first, that holds a ``sub-*`` folder."""
    level, opened = [root], 0
    for _ in range(_SEARCH_DEPTH):
        below = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:
                    names = sorted(e.name for e in entries if e.is_dir() and e.name[0] != ".")
            except OSError:
                continue
            for name in names:
                opened += 1
                if _holds_subjects(folder / name):
                    return folder / name
                if opened >= _SEARCH_FOLDERS:
                    return None
                below.append(folder / name)
        level = below
    return None
