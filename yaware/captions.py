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
