"""The prose of the results summary (summary.md): what the tables hold and how they were
made, around the age and site probes and the paired differences."""

import pandas as pd

from yaware.evaluate.captions import describe_pretraining
from yaware.evaluate.markdown import markdown_table

AGE_SITE_COLUMNS = (
    "age_mae",
    "age_mae_constant",
    "site_balanced_accuracy",
    "site_chance",
    "alignment",
    "uniformity",
)


def age_site_table(age_site: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of each label's age and site probes."""
    probes = [c for c in AGE_SITE_COLUMNS if c in age_site]
    age = age_site.groupby(["label", "method", "kind"], sort=False)[probes].agg(["mean", "std"])
    age.columns = [f"{name}_{stat.replace('std', 'sd')}" for name, stat in age.columns]
    seeds = age_site.groupby("label", sort=False).size().to_numpy()
    return age.reset_index().assign(seeds=seeds)


def summary_note(age_site: pd.DataFrame, config: dict) -> str:
    """What comes before the AUC table: how the run was made, and the age and site probes."""
    p, splits = config["pretraining"], config["splits"]
    return (
        "Made by the workflow from results/tables/*.csv. Pretraining: "
        f"{describe_pretraining(p)}; probes over "
        f"{splits['repeats']} draws per N_target (split seed {splits['seed']}). auc_sd is the "
        "spread over draws (and seeds). paper_auc: the published value on real data, where "
        "task and N_target match.\n\n## Age and site probes (pretraining validation set; "
        "mean and sd over seeds; site chance level = 1 / number of sites)\n\n"
        + markdown_table(age_site_table(age_site))
        + "\n\n## AUC by method, cohort, task and N_target"
    )


def summary_tail(comparisons: pd.DataFrame, settings: dict) -> str:
    """The paired differences against the baselines, with how to read them."""
    return (
        "## Paired differences against the baselines\n\n"
        f"Each label's AUC minus a baseline's ({', '.join(settings['baselines'])}) on the "
        "same draws and pretraining seeds (results/tables/comparisons.csv). p_better: the "
        "fraction of pairs where the label scores higher. The "
        f"{settings['confidence'] * 100:g} % interval and p-value are a t over the per-seed means "
        "(the pretrainings are the independent runs; the draws share one test set): none "
        "with one seed or with equal per-seed means, and none includes the test set's own "
        "sampling error. q_value: "
        "Benjamini-Hochberg over every tested row.\n\n"
        + (
            markdown_table(comparisons)
            if len(comparisons)
            else "None of these baselines was evaluated in this run: set comparisons.baselines."
        )
    )
