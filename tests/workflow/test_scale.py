"""BHB-10K's 13 cohorts and 10,420 scans plan as per-cohort jobs, never per-scan ones."""

import pandas as pd

from tests.workflow.helpers import (
    make_workdir,
    planned_jobs,
    snakemake,
    tiny_pretraining_config,
)
from yaware.data.bhb10k import BHB10K, write_placeholder_cohorts
from yaware.models.checkpoint import read_checkpoint


def test_bhb10k_plans_one_job_per_cohort_and_stage(tmp_path):
    cohorts = write_placeholder_cohorts(tmp_path / "bhb10k")
    sizes = [len(pd.read_csv(c["participants"], sep="\t")) for c in cohorts.values()]
    assert len(cohorts) == 13 and sum(sizes) == 10_420
    assert sum(subjects for _, subjects, _, _ in BHB10K) == 7_764
    workdir = make_workdir(tmp_path / "work", {"synthetic": {"cohorts": {}}, "cohorts": cohorts})
    plan = planned_jobs(workdir, "data")
    assert plan == {
        "qc_metrics": 13,
        "qc": 13,
        "convert": 13,
        "split": 13,
        "shared_scans": 1,
        "data": 1,
    }


def test_bhb10k_cohorts_are_pooled_for_pretraining(tmp_path):
    cohorts = write_placeholder_cohorts(tmp_path / "bhb10k")
    workdir = make_workdir(tmp_path / "work", {"synthetic": {"cohorts": {}}, "cohorts": cohorts})
    done = snakemake(workdir, "-n", "results/pretrain/simclr_cutout_densenet121_seed0/best.pt")
    assert done.returncode == 0, done.stderr[-2000:]
    plan = done.stdout
    # One pretraining job whose inputs are all 13 cohorts' arrays.
    assert plan.count("rule pretrain:") == 1
    block = plan[plan.index("rule pretrain:") :].split("\n\n")[0]
    assert all(f"results/data/{name}/data.npy" in block for name, *_ in BHB10K)


def test_a_pretraining_job_given_two_gpus_runs_two_processes(tmp_path):
    """`gpu: 2` for the rule (as the Slurm profile may set) starts one process per GPU with
    torchrun; on this CPU machine they are gloo processes, the same code path."""
    config = tiny_pretraining_config(epochs=2)
    workdir = make_workdir(tmp_path, config)
    run = "results/pretrain/yaware-sigma5_cutout_tinycnn_seed0"
    done = snakemake(workdir, f"{run}/best.pt", "--cores", "2", "--set-resources", "pretrain:gpu=2")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (workdir / "results/logs/pretrain/yaware-sigma5_cutout_tinycnn_seed0.log").read_text()
    assert "torch.distributed.run --standalone --nproc-per-node=2" in log
    last = read_checkpoint(workdir / run / "last.pt")
    assert last["epoch"] == 2 and len(last["policy_ranks"]) == 2
    assert list(pd.read_csv(workdir / run / "metrics.csv")["epoch"]) == [1, 2]


def test_compile_setting_reaches_the_pretraining_job(tmp_path):
    workdir = make_workdir(tmp_path, tiny_pretraining_config(epochs=1, compile=True))
    run = "results/pretrain/yaware-sigma5_cutout_tinycnn_seed0"
    done = snakemake(workdir, f"{run}/best.pt", "--cores", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_checkpoint(workdir / run / "last.pt")["meta"]["config"]["compile"] is True
