"""BHB-10K's 13 cohorts and 10,420 scans plan as per-cohort jobs, never per-scan ones."""

import pandas as pd

from tests.workflow.helpers import make_workdir, planned_jobs
from yaware.bhb10k import BHB10K, write_placeholder_cohorts


def test_bhb10k_plans_one_job_per_cohort_and_stage(tmp_path):
    cohorts = write_placeholder_cohorts(tmp_path / "bhb10k")
    sizes = [len(pd.read_csv(c["participants"], sep="\t")) for c in cohorts.values()]
    assert len(cohorts) == 13 and sum(sizes) == 10_420
    assert sum(subjects for _, subjects, _, _ in BHB10K) == 7_764
    workdir = make_workdir(tmp_path / "work", {"synthetic": {"cohorts": {}}, "cohorts": cohorts})
    assert planned_jobs(workdir, "data") == {"qc": 13, "convert": 13, "split": 13, "data": 1}
