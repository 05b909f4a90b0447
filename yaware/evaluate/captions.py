"""How a table's note or a figure's caption states the run that made its numbers.

Imported by the tables and figure scripts only: a change here reruns them, no training.
"""


def describe_pretraining(pretraining: dict) -> str:
    """The pretraining setup of the workflow config's ``pretraining`` section (the kernel
    only where y-Aware runs), e.g. "tinycnn, cutout, 15 epochs, seeds [0, 1], temperature
    0.1, y-Aware: gaussian kernel on age"."""
    p = pretraining
    if not p["methods"]:
        return "none (models made elsewhere only)"
    parts = [
        p["encoder"],
        p["augmentation"],
        f"{p['epochs']} epochs",
        f"seeds {p['seeds']}",
        f"temperature {p['temperature']:g}",
    ]
    if "yaware" in p["methods"]:
        parts.append(f"y-Aware: {p['kernel']} kernel on {p['label']}")
    return ", ".join(parts)


def describe_umap(cohort: str, pretraining: dict, figures: dict, ages: list[float]) -> str:
    """Figure 2's caption: what was embedded, how, and what a marker's size means."""
    return (
        f"UMAP of cohort {cohort}'s frozen representations (n_neighbors "
        f"{figures['umap_neighbors']}, min_dist {figures['umap_min_dist']:g}, seed 0); "
        f"marker size: age, smallest {min(ages):.0f} to largest {max(ages):.0f} years; "
        f"pretraining: {describe_pretraining(pretraining)}"
    )
