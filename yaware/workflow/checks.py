"""The config's checks against the files it names, before any job runs: each cohort's
files before the plan's checks across cohorts (:func:`yaware.workflow.plan.plan`), so that
a cohort's own fault is named first; the checkpoints and grid after it.

A mistyped path, label or class would otherwise surface hours later, at the job that first
reads it (or never: Snakemake plans no job for a missing input that older results stand in
for). Each check raises ValueError naming the config key, the file and the fix. Reads
tables and array headers only; no torch import.
"""

from pathlib import Path

from yaware.data.finite import check_finite_numbers
from yaware.data.grid import cat12_grid, check_fits_encoder
from yaware.errors import DataError
from yaware.workflow.plan import Plan

# An infinite QC threshold turns that check off; nothing else may be NaN or infinite.
INFINITE_OK = ("qc.ncr_max", "qc.iqr_max", "qc.corr_mean_min")


def check_finite(config: dict) -> None:
    check_finite_numbers(config, "config", infinite_ok=INFINITE_OK)


def check_cohort_files(cohorts: dict[str, dict], config: dict) -> None:
    """Every real cohort's table, maps and task (``cohorts``: :func:`cohorts_of`'s)."""
    for name, spec in cohorts.items():
        if not spec["synthetic"]:
            _check_cohort(name, spec, config)


def check_model_files(plan: Plan) -> None:
    """Every external checkpoint, and the training grid against every encoder."""
    for name, spec in plan.external.items():
        if not Path(spec["checkpoint"]).is_file():
            raise ValueError(
                f"external_models.{name}.checkpoint: {spec['checkpoint']} is not a file; "
                "point it at the checkpoint (a path relative to the working directory, or "
                "an absolute one)"
            )
    _check_grid_fits_encoders(plan)


def _check_cohort(name: str, spec: dict, config: dict) -> None:
    if spec.get("openbhb_root"):
        _check_openbhb(name, spec, config)
        return
    if not Path(spec["participants"]).is_file():
        raise ValueError(
            f"cohorts.{name}.participants: {spec['participants']} is not a file; point "
            "it at the cohort's participants table (participants.tsv)"
        )
    if "cat12_root" in spec and not Path(spec["cat12_root"]).is_dir():
        raise ValueError(
            f"cohorts.{name}.cat12_root: {spec['cat12_root']} is not a folder; point it "
            "at the CAT12 derivatives, the folder that holds the sub-* folders"
        )
    if spec["role"] == "evaluate":
        _check_task(name, spec)
    elif name in (config["pretraining"]["cohorts"] or [name]):
        _check_pretraining_label(name, spec, config)
    if "array" in spec:
        _check_array(name, spec)
    else:
        _check_cat12_root(name, spec)


def _check_openbhb(name: str, spec: dict, config: dict) -> None:
    """An OpenBHB copy's root and table, unless the workflow fetches what is missing."""
    from yaware.data.openbhb import fetch_hint, read_openbhb_table

    if spec.get("openbhb_download"):
        return
    root, table = spec["openbhb_root"], spec["openbhb_table"]
    for path, what in ((root, "is not a folder"), (table, "does not exist")):
        if not Path(path).exists():
            raise ValueError(
                f"cohorts.{name}.openbhb_root: {path} {what}; {fetch_hint(root)}, or point "
                "openbhb_root at the folder that holds OpenBHB's participants.tsv"
            )
    try:
        read_openbhb_table(table)
    except DataError as err:
        raise ValueError(f"cohorts.{name}.openbhb_root: {err}") from None
    if name in (config["pretraining"]["cohorts"] or [name]):
        _check_pretraining_label(name, {**spec, "participants": table}, config)


def _read(spec: dict):
    """The cohort's table, or None where it cannot be read: its own checks name why."""
    from yaware.data.participants import read_table

    try:
        return read_table(spec["participants"])
    except DataError:
        return None


def _check_array(name: str, spec: dict) -> None:
    """An array cohort's maps against its grid and its table: reads the array's header only."""
    from yaware.data.maps import open_map_array
    from yaware.data.participants import ID_COLUMN, missing_column

    if not Path(spec["array"]).is_file():
        raise ValueError(
            f"cohorts.{name}.array: {spec['array']} is not a file; point it at the .npy of "
            "the cohort's maps"
        )
    table = _read(spec)
    if table is not None and ID_COLUMN not in table.columns:
        # The original repository's metadata.csv has none; the splits group by subject.
        fix = (
            "add one, the subject of each map (the splits keep a subject's scans on one "
            "side; number the rows if each is a subject of its own)"
        )
        error = missing_column(table, ID_COLUMN, spec["participants"], fix)
        raise ValueError(f"cohorts.{name}.participants: {error}")
    rows = None if table is None else len(table)
    try:
        open_map_array(spec["array"], cat12_grid(spec["voxel_mm"]), rows)
    except DataError as err:
        raise ValueError(f"cohorts.{name}.array: {err}") from None


def _check_cat12_root(name: str, spec: dict) -> None:
    """A real cohort's CAT12 folder holds its subjects' folders, unless the table points
    at every map: a root set one level off (derivatives/ for derivatives/cat12/, or a
    subject's folder) would otherwise exclude every scan after QC read the table."""
    from yaware.data.cat12 import root_problem

    problem = root_problem(spec["cat12_root"])
    if not problem:
        return
    table = _read(spec)
    paths = None if table is None else table.get("path")
    if paths is None or paths.isna().any() or (paths.astype(str).str.strip() == "").any():
        raise ValueError(f"cohorts.{name}.cat12_root: {problem}")


def _check_task(name: str, spec: dict) -> None:
    """A real evaluation cohort's task against its table: a typo in the label or a class
    would otherwise surface at the split, after QC and the conversion."""
    from yaware.data.labels import binary_labels
    from yaware.data.participants import read_table

    task = spec["task"]
    try:
        table = read_table(spec["participants"])
        binary_labels(
            table, task["label"], task["positive"], task["negative"], spec["participants"]
        )
    except DataError as err:
        raise ValueError(f"cohorts.{name}.task: {err}") from None


def _check_pretraining_label(name: str, spec: dict, config: dict) -> None:
    """The kernel's label against a real pretraining cohort's table. QC excludes scans
    without `pretrain_label` (age by default); a `pretraining.label` other than it, absent
    or missing for some scans, would otherwise stop every pretraining job after QC and the
    conversion."""
    from yaware.data.participants import check_label_column, missing_column, read_table

    label, required = config["pretraining"]["label"], config["pretrain_label"]
    source = f"cohorts.{name}.participants ({spec['participants']})"
    try:
        table = read_table(spec["participants"])
    except DataError as err:
        raise ValueError(f"cohorts.{name}.participants: {err}") from None
    if label not in table.columns:
        raise ValueError(
            str(missing_column(table, label, source, "set pretraining.label to one of them"))
        )
    if label != required:
        try:
            check_label_column(table, label, source)
        except DataError as err:
            raise ValueError(
                f"{err} Or set pretrain_label: {label}, and QC excludes those scans with "
                "their reason."
            ) from None


def _check_grid_fits_encoders(plan: Plan) -> None:
    """Stop before any job when the training grid is smaller than an encoder takes."""
    voxel_mm = plan.config["conversion"]["voxel_mm"]
    encoders = {"pretraining.encoder": plan.pretraining["encoder"]}
    for name, spec in plan.external.items():
        if spec["encoder"]:
            encoders[f"external_models.{name}.encoder"] = spec["encoder"]
    for key, encoder in encoders.items():
        source = f"conversion.voxel_mm {voxel_mm} (for {key})"
        check_fits_encoder(encoder, (1, *cat12_grid(voxel_mm).shape), source)
