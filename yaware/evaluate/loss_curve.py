"""The loss curve a pretraining job draws beside its checkpoint.

Apart from the paper's figures (yaware.evaluate.plots): a change to those reruns no training job.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from yaware.io import write_atomic


def loss_curve(metrics: pd.DataFrame, path: str | os.PathLike, title: str) -> None:
    """Training (and validation) loss per epoch of a pretraining run's ``metrics.csv``."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(metrics["epoch"], metrics["train_loss"], label="training")
    if "val_loss" in metrics and metrics["val_loss"].notna().any():
        ax.plot(metrics["epoch"], metrics["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
