"""CAT12 derivatives: where the files are and what the report XML holds.

Layout (BIDS-like, as CAT12 and brainprep write it)::

    <root>/sub-<id>/ses-<ses>/anat/mri/mwp1[u]sub-<id>_ses-<ses>[_run-<r>]_T1w.nii[.gz]
    <root>/sub-<id>/ses-<ses>/anat/report/cat_[u]sub-<id>_ses-<ses>[_run-<r>]_T1w.xml

A dataset without sessions drops the ``ses-<ses>`` folder and entity
(``<root>/sub-<id>/anat/mri/mwp1sub-<id>_T1w.nii``), as CAT12 writes it next to a BIDS
``sub-<id>/anat/sub-<id>_T1w.nii``. Identifiers are taken with or without their BIDS
prefix: participant_id ``sub-01`` or ``01``, session ``ses-1`` or ``1``.

``cat_*.xml`` has a root ``<S>`` with ``<qualityratings>`` (marks from 0.5 = best to
10.5: NCR, ICR, res_RMS, IQR) and ``<subjectmeasures>`` (vol_TIV, vol_abs_CGW in ml).
"""

import math
import os
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


def find_scan(root: str | os.PathLike, subject: str, session: str, run: str | None = None) -> Found:
    """Search the layout for a scan's map and report ('u' prefix, .nii or .nii.gz)."""
    stem = _stem(subject, session, run)
    anat = _anat(root, subject, session)
    images = [
        anat / "mri" / f"mwp1{prefix}{stem}{ext}"
        for prefix in ("", "u")
        for ext in (".nii.gz", ".nii")
    ]
    broken = [p for p in images if p.is_symlink() and not p.exists()]
    images = [p for p in images if p.exists()]
    reports = [anat / "report" / f"cat_{prefix}{stem}.xml" for prefix in ("", "u")]
    reports = [p for p in reports if p.exists()]
    found = Found(image=images[0] if images else None, report=reports[0] if reports else None)
    if len(images) > 1:
        found.problem = f"several maps for one scan: {[p.name for p in images]}; keep one"
    elif not images and broken:
        target = os.readlink(broken[0])
        found.problem = f"{broken[0].name} is a link to {target}, which does not exist"
    elif not images:
        found.problem = f"no mwp1 map under {anat / 'mri'} (looked for mwp1[u]{stem}.nii[.gz])"
        sessions = sorted(p.name for p in anat.parent.glob("ses-*")) if not session else []
        if sessions:
            found.problem += f"; the subject has session folders {sessions}: add a 'session' column"
    return found


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
