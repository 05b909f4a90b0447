"""The cohorts of a config as the rules read them: the synthetic ones, and the real ones
given as a CAT12 folder, an array of maps or an OpenBHB copy. Reads no file."""

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


def cohorts_of(config: dict) -> dict[str, dict]:
    """Every cohort by name: the synthetic ones (written by the workflow) and the real ones."""
    cohorts = {}
    for name, spec in config["synthetic"]["cohorts"].items():
        task = None
        if spec["role"] == "evaluate":
            task = {"label": "diagnosis", "positive": [spec["diagnosis"]], "negative": ["control"]}
        cohorts[name] = {
            "role": spec["role"],
            "participants": f"results/synth/{name}/participants.tsv",
            "cat12_root": f"results/synth/{name}/cat12",
            "voxel_mm": config["synthetic"]["voxel_mm"],
            "task": task,
            "diagnosis": spec.get("diagnosis"),
            "synthetic": True,
        }
    for name, spec in config["cohorts"].items():
        spec = openbhb_cohort(name, spec) if "openbhb_root" in spec else _maps_cohort(name, spec)
        if name in cohorts:
            raise ValueError(f"cohort {name!r} is both synthetic and real: rename one")
        if spec["role"] == "evaluate" and "task" not in spec:
            raise ValueError(
                f"cohorts.{name}: an evaluation cohort needs a task: {{label, positive, negative}}"
            )
        cohorts[name] = {**spec, "task": spec.get("task"), "synthetic": False}
    if not cohorts:
        raise ValueError("no cohort: set synthetic.cohorts or cohorts in the config")
    return cohorts


def _maps_cohort(name: str, spec: dict) -> dict:
    """A real cohort whose maps are a CAT12 folder or one array, its paths expanded."""
    sources = [key for key in ("cat12_root", "array") if key in spec]
    if len(sources) != 1 or "participants" not in spec:
        raise ValueError(
            f"cohorts.{name}: set participants and one of cat12_root (a CAT12 derivatives "
            "folder), array (a .npy of maps, one per row of the participants table) and "
            "openbhb_root (an OpenBHB copy)"
        )
    # "~/data/..." as a shell would read it; Snakemake and Python take "~" literally.
    return {
        **spec,
        "participants": os.path.expanduser(spec["participants"]),
        sources[0]: os.path.expanduser(spec[sources[0]]),
    }
