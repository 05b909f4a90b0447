"""The workflow's figures, each drawn from a table the workflow wrote."""

import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from yaware.io import write_atomic

FLOOR_STYLES = {
    "Random encoder": {"linestyle": ":", "color": "0.55", "marker": "v"},
    "PCA of voxels": {"linestyle": "-.", "color": "0.3", "marker": "^"},
}
DEFAULT_FLOOR = {"linestyle": ":", "color": "0.45", "marker": "x"}


def _save_with_caption(
    fig: plt.Figure, path: str | os.PathLike, caption: str, fontsize: float = 8
) -> None:
    """Write the figure with ``caption`` under it, wrapped to the figure's width (a long
    caption on a one-panel figure ran off both edges), and lay out the panels above it."""
    width_pt, height_pt = fig.get_size_inches() * 72
    # An average character of DejaVu Sans is about 0.55 of the font size wide.
    width = max(20, int(0.95 * width_pt / (0.55 * fontsize)))
    # Not at hyphens: a file name (yaware-sigma2_...) stays whole on its line.
    lines = textwrap.wrap(caption, width=width, break_on_hyphens=False)
    space = (len(lines) * 1.3 * fontsize + 6) / height_pt
    fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=fontsize)
    fig.tight_layout(rect=(0, space, 1, 1))
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


def panel_titles(panels: Sequence[tuple[str, str]]) -> list[str]:
    """A title per (cohort, task) panel: the task, and its cohort where cohorts share it."""
    counts = pd.Series([task for _, task in panels]).value_counts()
    return [task if counts[task] == 1 else f"{task} ({cohort})" for cohort, task in panels]


def auc_vs_n_target(
    linear: pd.DataFrame,
    finetune: pd.DataFrame,
    panels: Sequence[tuple[str, str]],
    path: str | os.PathLike,
    caption: str,
) -> None:
    """Figure 1: one panel per evaluation cohort (its task), mean AUC +- sd over draws
    against N_target."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (cohort, _), title in zip(axes[0], panels, panel_titles(panels), strict=True):
        for label, group in linear[linear["cohort"] == cohort].groupby("label", sort=False):
            stats = group.groupby("n_target")["auc"].agg(["mean", "std"]).reset_index()
            kind = group["kind"].iloc[0]
            style = {"marker": "o"}
            if kind == "floor":
                style = FLOOR_STYLES.get(label, DEFAULT_FLOOR)
            elif kind == "external":  # a checkpoint made elsewhere, e.g. the released one
                style = {"marker": "D", "linestyle": "--"}
            ax.errorbar(
                stats["n_target"],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                capsize=3,
                label=label,
                **style,
            )
        scratch = finetune[(finetune["cohort"] == cohort) & (finetune["init_kind"] == "scratch")]
        if len(scratch):
            stats = scratch.groupby("n_target")["auc"].agg(["mean", "std"]).reset_index()
            ax.errorbar(
                stats["n_target"],
                stats["mean"],
                yerr=stats["std"].fillna(0),
                marker="s",
                linestyle="--",
                color="black",
                capsize=3,
                label="Fully supervised",
            )
        ax.axhline(0.5, color="0.8", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("N_target (training subjects)")
        ax.set_ylabel("test ROC AUC")
    # Beside the panels: inside one it hid points (BD's random encoder at N_target 100).
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    _save_with_caption(fig, path, caption)


def sigma_effect(
    linear: pd.DataFrame, age: pd.DataFrame, path: str | os.PathLike, caption: str
) -> None:
    """Figure 3: AUC at the largest N_target and age MAE against sigma (0 = SimCLR)."""
    models = linear[linear["method"].isin(["yaware", "simclr"])]
    panels = list(dict.fromkeys(zip(models["cohort"], models["task"], strict=True)))
    fig, axes = plt.subplots(
        1, len(panels) + 1, figsize=(4 * (len(panels) + 1), 3.4), squeeze=False
    )
    for ax, (cohort, _), title in zip(axes[0], panels, panel_titles(panels), strict=False):
        rows = models[
            (models["cohort"] == cohort) & (models["n_target"] == models["n_target"].max())
        ]
        stats = rows.groupby("sigma")["auc"].agg(["mean", "std"]).reset_index()
        ax.errorbar(
            stats["sigma"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3
        )
        ax.set_title(f"{title}, N_target={int(models['n_target'].max())}", fontsize=9)
        ax.set_xlabel("sigma (0 = SimCLR)")
        ax.set_ylabel("test ROC AUC")
    ax = axes[0][-1]
    rows = age[age["method"].isin(["yaware", "simclr"])]
    stats = rows.groupby("sigma")["age_mae"].agg(["mean", "std"]).reset_index()
    ax.errorbar(stats["sigma"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3)
    for label, group in age[age["kind"] == "floor"].groupby("label"):
        style = {k: v for k, v in FLOOR_STYLES.get(label, DEFAULT_FLOOR).items() if k != "marker"}
        ax.axhline(group["age_mae"].mean(), label=label, **style)
    if len(age):
        ax.axhline(
            age["age_mae_constant"].mean(),
            color="crimson",
            linestyle="--",
            label="constant predictor",
        )
    ax.set_title("age probe (pretraining validation)", fontsize=9)
    ax.set_xlabel("sigma (0 = SimCLR)")
    ax.set_ylabel("MAE (years)")
    ax.legend(fontsize=7)
    _save_with_caption(fig, path, caption)


def umap_panels(
    embeddings: Sequence[np.ndarray],
    titles: Sequence[str],
    diagnosis: np.ndarray,
    age: np.ndarray,
    path: str | os.PathLike,
    caption: str,
) -> None:
    """Figure 2: 2-D embeddings side by side, colour = diagnosis, marker size = age."""
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5 * len(embeddings), 4.4), squeeze=False)
    sizes = 4 + 60 * (age - age.min()) / max(np.ptp(age), 1e-9)
    for ax, points, title in zip(axes[0], embeddings, titles, strict=True):
        for value, colour in zip(
            sorted(set(diagnosis)), ["tab:blue", "tab:red", "tab:green"], strict=False
        ):
            chosen = diagnosis == value
            ax.scatter(
                points[chosen, 0],
                points[chosen, 1],
                s=sizes[chosen],
                c=colour,
                alpha=0.6,
                label=value,
                edgecolors="none",
            )
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8)
    _save_with_caption(fig, path, caption, fontsize=7)


def age_mae_by_epoch(
    curves: pd.DataFrame, floors: pd.DataFrame, path: str | os.PathLike, caption: str
) -> None:
    """Figure 4: each label's validation age-probe MAE per pretraining epoch (mean +- sd
    over seeds), beside the floors' MAE of the final probe. ``curves``: label, seed,
    epoch, val_age_mae; ``floors``: the floor rows of age_site.csv."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, group in curves.groupby("label", sort=False):
        stats = group.groupby("epoch")["val_age_mae"].agg(["mean", "std"]).reset_index()
        ax.plot(stats["epoch"], stats["mean"], marker="o", markersize=3, label=label)
        spread = stats["std"].fillna(0)
        ax.fill_between(stats["epoch"], stats["mean"] - spread, stats["mean"] + spread, alpha=0.15)
    for label, group in floors.groupby("label"):
        style = {k: v for k, v in FLOOR_STYLES.get(label, DEFAULT_FLOOR).items() if k != "marker"}
        ax.axhline(group["age_mae"].mean(), label=label, **style)
    if len(floors):
        constant = floors["age_mae_constant"].mean()
        ax.axhline(constant, color="crimson", linestyle="--", label="constant predictor")
    ax.set_xlabel("pretraining epoch")
    ax.set_ylabel("validation age MAE (years)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    _save_with_caption(fig, path, caption)
