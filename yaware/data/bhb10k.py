"""The composition of BHB-10K (the paper's pretraining set), for scale tests and plans.

13 healthy cohorts, 7,764 subjects, 10,420 sessions (original README's table).
"""

import os
from pathlib import Path

import pandas as pd

from yaware.io import make_folder, save_table

# (cohort, subjects, sessions, mean age)
BHB10K = [
    ("hcp", 1113, 1113, 29),
    ("ixi", 559, 559, 48),
    ("corr", 1371, 2897, 26),
    ("npc", 65, 65, 26),
    ("nar", 303, 323, 22),
    ("rbp", 40, 40, 23),
    ("oasis3", 597, 1262, 67),
    ("gsp", 1570, 1639, 21),
    ("icbm", 622, 977, 30),
    ("abide1", 567, 567, 17),
    ("abide2", 559, 580, 15),
    ("localizer", 82, 82, 25),
    ("mpi_leipzig", 316, 316, 37),
]


def write_placeholder_cohorts(folder: str | os.PathLike) -> dict[str, dict]:
    """Participants tables of BHB-10K's sizes, an empty folder per subject (no images) and
    the matching ``cohorts:``."""
    folder = Path(folder)
    cohorts = {}
    for name, subjects, sessions, age in BHB10K:
        ids, ses = [], []
        for k in range(sessions):
            subject = k if k < subjects else k % subjects
            ids.append(f"{name}{subject:05d}")
            ses.append(str(1 + k // subjects))
        table = pd.DataFrame({"participant_id": ids, "session": ses, "age": float(age), "sex": "F"})
        save_table(folder / name / "participants.tsv", table)
        for subject in dict.fromkeys(ids):
            make_folder(folder / name / "cat12" / f"sub-{subject}")
        cohorts[name] = {
            "role": "pretrain",
            "participants": str(folder / name / "participants.tsv"),
            "cat12_root": str(folder / name / "cat12"),
        }
    return cohorts
