"""OpenBHB cohorts in the plan: a config's ``openbhb_root`` cohort as the rules read it."""

import os

# The challenge metrics of every model on the OpenBHB cohorts.
OPENBHB_TABLE = "results/tables/openbhb.csv"
OPENBHB_KEYS = ("openbhb_root", "openbhb_download", "openbhb_roi_floor")


def openbhb_cohort(name: str, spec: dict) -> dict:
    """A cohort read from an OpenBHB copy: its table is the one the ``openbhb_index`` job
    writes from the copy's ``participants.tsv`` (``openbhb_table``)."""
    others = sorted({"participants", "cat12_root", "array"} & set(spec))
    if others:
        raise ValueError(
            f"cohorts.{name}: openbhb_root reads the copy's own participants.tsv and maps; "
            f"remove {', '.join(others)}"
        )
    if spec["role"] != "pretrain":
        raise ValueError(
            f"cohorts.{name}: OpenBHB holds healthy controls only, so its role is pretrain "
            "(its official test splits are scored in results/tables/openbhb.csv)"
        )
    root = os.path.expanduser(spec["openbhb_root"])
    return {
        **spec,
        "openbhb_root": root,
        "openbhb_table": os.path.join(root, "participants.tsv"),
        "participants": f"results/openbhb/{name}/participants.tsv",
    }
