"""Pretraining experiments declared in the workflow config, and their folder names.

Kept free of torch imports: Snakemake reads it at every DAG build. A name carries the
parameters, e.g. ``yaware-sigma5_cutout_tinycnn_seed0`` or ``simclr_cutout_tinycnn_seed0``,
so a user finds an experiment's folder by what it is.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    method: str
    sigma: float | str | None  # a number, or a bandwidth rule (scott, silverman)
    augmentation: str
    encoder: str
    seed: int

    @property
    def name(self) -> str:
        method = self.method if self.sigma is None else f"{self.method}-sigma{_number(self.sigma)}"
        return f"{method}_{self.augmentation}_{self.encoder}_seed{self.seed}"

    @property
    def label(self) -> str:
        """The method as a figure legend shows it."""
        sigma = "" if self.sigma is None else f" (sigma={_number(self.sigma)})"
        labels = {
            "yaware": f"y-Aware{sigma}",
            "simclr": "SimCLR",
            "age_supervision": "Age supervision",
            "model_genesis": "Model Genesis",
            "threshold": f"Threshold{sigma}",
            "expw": f"ExpW{sigma}",
            "rank_n_contrast": "Rank-N-Contrast",
            "decoupled_uniformity": f"Decoupled uniformity{sigma}",
        }
        return labels.get(self.method, self.method)


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


# Pretraining settings a method's training never reads: only the kernel methods read sigma
# and the kernel; SimCLR's NT-Xent takes no label and no kernel (its job still checks that
# the label column is there), Age supervision no temperature or kernel, Model Genesis none
# of the three, nor the augmentation: it learns from its own corruptions. They are kept out
# of that method's recorded params (a new kernel retrains the kernel methods' experiments
# only) and out of what a resumed run must keep.
UNREAD_SETTINGS = {
    "simclr": ("sigma", "kernel", "label"),
    "yaware": (),
    "age_supervision": ("sigma", "kernel", "temperature"),
    "model_genesis": ("sigma", "kernel", "temperature", "label", "augmentation"),
    "threshold": (),
    "expw": (),
    # Rank-N-Contrast ranks by label distance: no kernel; its temperature is its own
    # (methods.rank_n_contrast.temperature).
    "rank_n_contrast": ("sigma", "kernel"),
    # Decoupled uniformity's potential has no temperature.
    "decoupled_uniformity": ("temperature",),
}
# Method options that stand for the pretraining setting of that name in the method's jobs.
METHOD_SETTINGS = ("temperature", "prior_lambda")


def leave_out_null_methods(config: dict) -> None:
    """Remove the pretraining methods set to null: how a config given on top of another
    (``--configfile``) drops one of its methods, since Snakemake merges the two."""
    methods = config["pretraining"]["methods"]
    config["pretraining"]["methods"] = {m: o for m, o in methods.items() if o is not None}


def experiments(pretraining: dict) -> list[Experiment]:
    """Every experiment of the config's ``pretraining`` section (methods x sigmas x seeds),
    once ``leave_out_null_methods`` has removed the methods set to null."""
    out = []
    for seed in pretraining["seeds"]:
        for method, options in pretraining["methods"].items():
            sigmas = options.get("sigma")
            # Model Genesis trains on its own corruptions of unaugmented scans: named with
            # augmentation "none", it is not retrained for another augmentation.
            unread = "augmentation" in UNREAD_SETTINGS[method]
            augmentation = "none" if unread else pretraining["augmentation"]
            for sigma in sigmas if sigmas else [None]:
                out.append(Experiment(method, sigma, augmentation, pretraining["encoder"], seed))
    return out


def random_encoder_name(pretraining: dict) -> str:
    return f"random_{pretraining['encoder']}_seed{pretraining['seeds'][0]}"


PCA_NAME = "pca"
SCRATCH_NAME = "scratch"
