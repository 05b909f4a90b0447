"""Snakemake script: scans shared between cohorts or subjects, and the leaks among them."""

from yaware.data.shared_scans import check_leaks, scan_sides, shared_scans
from yaware.io import save_table
from yaware.workflow.logged import run_logged


def main(
    manifests: list[str], splits: list[str], cohorts: dict[str, str], on_leak: str, out: str
) -> None:
    sides = [
        scan_sides(manifest, split, cohort, role)
        for manifest, split, (cohort, role) in zip(manifests, splits, cohorts.items(), strict=True)
    ]
    shared = shared_scans(sides)
    check_leaks(shared, on_leak)
    save_table(out, shared)


run_logged(
    snakemake.log[0],
    main,
    list(snakemake.input.manifests),
    list(snakemake.input.splits),
    snakemake.params.cohorts,
    snakemake.params.on_leak,
    snakemake.output[0],
)
