"""The summary's statement of each control with known ground truth: what it expects and
what the run shows, read from the paired differences of the linear probe.

The positive control's patients differ from its controls by accelerated ageing alone: a
representation that carries age must detect them, so y-Aware should beat SimCLR there with
a paired interval above 0. The negative control's patients differ by a regional pattern
alone: no gain from age is expected, and whatever comes out is reported.
"""

import pandas as pd

NOT_SHOWN = "the representations do not carry the proxy label; train longer or check the label"
EXPECTED = {
    "positive control": (
        "its patients differ by accelerated ageing alone. Expected: y-Aware above SimCLR, "
        "with a paired interval above 0"
    ),
    "negative control": (
        "its patients differ by a regional pattern alone, no ageing. Expected: no gain "
        "from age; reported as it comes out"
    ),
}


def _difference(row: pd.Series) -> str:
    interval = (
        f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
        if pd.notna(row["ci_low"])
        else "(no interval: one pretraining seed, or equal seeds)"
    )
    return f"{row['label']} minus {row['baseline']}: {row['diff_mean']:+.3f} {interval}"


def _pairs(comparisons: pd.DataFrame, methods: dict[str, str], cohort: str) -> pd.DataFrame:
    """The linear probe's y-Aware minus SimCLR rows of ``cohort`` at its largest N_target."""
    rows = comparisons[
        (comparisons["evaluation"] == "linear probe")
        & (comparisons["cohort"] == cohort)
        & (comparisons["label"].map(methods) == "yaware")
        & (comparisons["baseline"].map(methods) == "simclr")
    ]
    return rows[rows["n_target"] == rows["n_target"].max()] if len(rows) else rows


def control_section(
    comparisons: pd.DataFrame, methods: dict[str, str], controls: dict[str, str]
) -> str:
    """Markdown: each control cohort's expectation and this run's result. ``methods``: the
    method of each label; ``controls``: 'positive control' or 'negative control' by cohort."""
    if not controls:
        return ""
    lines = ["## Controls with known ground truth", ""]
    for cohort, kind in controls.items():
        rows = _pairs(comparisons, methods, cohort)
        head = f"- **{cohort}**, {kind}: {EXPECTED[kind]}."
        if rows.empty:
            lines.append(f"{head} Not measured: this run compares no y-Aware with SimCLR.")
            continue
        n_target = int(rows["n_target"].iloc[0])
        measured = "; ".join(_difference(row) for _, row in rows.iterrows())
        lines.append(f"{head} This run (linear probe, N_target={n_target}): {measured}.")
        if kind == "positive control":
            shown = rows[rows["ci_low"] > 0]
            if shown.empty:
                lines.append(f"  **Not shown: {NOT_SHOWN}.**")
            else:
                lines.append(f"  Shown by {', '.join(shown['label'])}.")
    return "\n".join(lines)
