"""Leak-free splits: by subject, never by scan, stratified by site, age bin and sex.

- Pretraining cohorts: ``train`` / ``val`` (a cohort with an official split, as OpenBHB:
  drawn inside its ``train`` side, the official test sides kept).
- Evaluation cohorts: a fixed held-out ``test`` set, the rest ``train`` (the pool), and
  for each N_target and repeat r a stratified draw of N_target training subjects (the
  paper's x axis). Optionally whole sites held out as ``external``. Evaluation uses one
  scan per subject (its first session), so AUCs are over independent subjects.
"""

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from yaware.data.balance import split_balance
from yaware.data.labels import binary_labels, matches
from yaware.data.participants import ID_COLUMN, as_text, read_table
from yaware.errors import ConfigError, DataError
from yaware.io import save_json, save_table


@dataclass
class SplitSettings:
    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    n_target: list[int] = field(default_factory=lambda: [50, 100])
    repeats: int = 3
    age_bins: int = 4
    external_sites: list[str] = field(default_factory=list)


def strata(table: pd.DataFrame, columns: Sequence[str], age_bins: int) -> np.ndarray:
    """One stratum code per row from the available columns (age cut into quantile bins)."""
    parts = []
    for column in columns:
        if column not in table.columns:
            continue
        values = table[column]
        if column == "age":
            ages = pd.to_numeric(values, errors="coerce")
            values = pd.qcut(ages.rank(method="first"), q=min(age_bins, len(ages)), labels=False)
        parts.append(as_text(values))
    if not parts:
        return np.zeros(len(table), dtype=int)
    joined = parts[0].str.cat(parts[1:], sep="|") if len(parts) > 1 else parts[0]
    return pd.factorize(joined)[0]


def _group_fold(
    table: pd.DataFrame, candidates: Sequence[np.ndarray], fraction: float, seed: int
) -> np.ndarray:
    """Boolean mask of one subject-level fold of about ``fraction`` of the rows.

    ``candidates`` are stratum codes from the finest to the coarsest: a small cohort can
    have strata too rare to split, and then the next, coarser one is used.
    """
    n_splits = max(2, round(1 / fraction))
    groups = table[ID_COLUMN].astype(str).to_numpy()
    if len(np.unique(groups)) < n_splits:
        raise DataError(f"{len(np.unique(groups))} subjects are too few for a {fraction:.0%} split")
    for labels in [*candidates, np.zeros(len(table), dtype=int)]:
        if np.bincount(labels).max() < n_splits:
            continue
        with warnings.catch_warnings():  # rare strata trigger a warning per fit, not an error
            warnings.simplefilter("ignore", UserWarning)
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            _, held = next(folds.split(np.zeros(len(table)), labels, groups))
        break
    mask = np.zeros(len(table), bool)
    mask[held] = True
    return mask


def _candidates(table: pd.DataFrame, columns: Sequence[str], age_bins: int) -> list[np.ndarray]:
    """Strata over columns[:k] for k from all of them down to one."""
    return [strata(table, columns[:k], age_bins) for k in range(len(columns), 0, -1)]


def pretrain_split(table: pd.DataFrame, settings: SplitSettings) -> pd.DataFrame:
    codes = _candidates(table, ["age", "site", "sex"], settings.age_bins)
    val = _group_fold(table, codes, settings.val_fraction, settings.seed)
    return pd.DataFrame(
        {
            ID_COLUMN: table[ID_COLUMN],
            "session": table["session"],
            "split": np.where(val, "val", "train"),
        }
    )


def official_pretrain_split(table: pd.DataFrame, settings: SplitSettings) -> pd.DataFrame:
    """A pretraining cohort distributed with its own split (OpenBHB's ``official_split``):
    ``train`` / ``val`` drawn inside its ``train`` rows only; every other row keeps its
    official side (``internal_test``, ``external_test``), which no pretraining reads."""
    official = table["official_split"].astype(str)
    train = table[official == "train"]
    if train.empty:
        raise DataError("no row has official_split 'train': there is nothing to pretrain on")
    split = pd.DataFrame(
        {ID_COLUMN: table[ID_COLUMN], "session": table["session"], "split": official}
    )
    split.loc[train.index, "split"] = pretrain_split(train, settings)["split"].to_numpy()
    return split


def session_order(sessions: pd.Series) -> pd.Series:
    """A sort key for session labels by their numbers: ``2`` before ``10`` and ``M06``
    before ``M12``, where a text sort puts ``10`` first."""
    return (
        sessions.astype(str)
        .str.removeprefix("ses-")
        .str.replace(r"\d+", lambda number: number.group().zfill(12), regex=True)
    )


def first_sessions(table: pd.DataFrame) -> pd.DataFrame:
    """Each subject's first session (in :func:`session_order`), in the table's order."""
    ordered = table.sort_values(
        [ID_COLUMN, "session"], key=lambda c: session_order(c) if c.name == "session" else c
    )
    return ordered.drop_duplicates(ID_COLUMN).sort_index()


def evaluation_split(
    table: pd.DataFrame,
    task_labels: np.ndarray,
    settings: SplitSettings,
    cohort: str,
    classes: tuple[object, object] = ("negative", "positive"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(split table, draws table) for an evaluation cohort: :func:`evaluation_sides`, then
    :func:`training_draws` from its pool."""
    split = evaluation_sides(table, task_labels, settings, cohort, classes)
    pool = training_pool(table, task_labels, split)
    draws = training_draws(pool, settings.n_target, settings.repeats, settings.seed, cohort)
    return split, draws


def evaluation_sides(
    table: pd.DataFrame,
    task_labels: np.ndarray,
    settings: SplitSettings,
    cohort: str,
    classes: tuple[object, object] = ("negative", "positive"),
) -> pd.DataFrame:
    """An evaluation cohort's split: each subject's first session on the side "test" (the
    fixed held-out test set), "external" (whole sites held out) or "train" (the pool the
    training draws come from). ``task_labels`` 0/1 per row, ``classes`` what labels 0 and
    1 stand for (for messages). The draws' settings (n_target, repeats) play no part."""
    table = table.assign(_label=task_labels)
    base = first_sessions(table)
    split = pd.Series("train", index=base.index)
    if settings.external_sites:
        split[_external_rows(base, [str(s) for s in settings.external_sites], cohort)] = "external"
        held = base.loc[split == "external", "_label"]
        if held.nunique() < 2:
            raise ConfigError(
                f"splits.external_sites: the sites {sorted(settings.external_sites)} of "
                f"{cohort} hold only class {sorted(held.unique().tolist())} of the task; an "
                "external AUC needs both: add a site with the other class"
            )
    inside = base[split == "train"]
    codes = _candidates(
        inside.assign(dx=inside["_label"]), ["dx", "site", "sex"], settings.age_bins
    )
    test = _group_fold(inside, codes, settings.test_fraction, settings.seed)
    test = _test_with_both_classes(
        inside["_label"].to_numpy(), test, settings.seed, f"{cohort}'s task", classes
    )
    split[inside.index[test]] = "test"
    split_table = pd.DataFrame(
        {ID_COLUMN: base[ID_COLUMN], "session": base["session"], "split": split}
    )
    return split_table.sort_index()


def training_pool(
    table: pd.DataFrame, task_labels: np.ndarray, split: pd.DataFrame
) -> pd.DataFrame:
    """The subjects the training draws come from: the first sessions that ``split`` puts on
    its "train" side, with their task label (column ``_label``), in the table's order. The
    same rows whether the split was just made or read back from its file."""
    base = first_sessions(table.assign(_label=task_labels))
    keys = pd.MultiIndex.from_frame(base[[ID_COLUMN, "session"]].astype(str))
    sides = split.astype({ID_COLUMN: str, "session": str}).set_index([ID_COLUMN, "session"])
    return base[(sides["split"].reindex(keys) == "train").to_numpy()]


def task_pool(participants: str | os.PathLike, split: pd.DataFrame, task: dict) -> pd.DataFrame:
    """:func:`training_pool` of a converted cohort's table and its split, for a task
    (``label``, ``positive``, ``negative``): what the draws job and each fine-tuning job
    draw from."""
    table = read_table(participants)
    labels, in_task = binary_labels(
        table, task["label"], task["positive"], task["negative"], str(participants)
    )
    return training_pool(table[in_task], labels[in_task], split)


def training_draws(
    pool: pd.DataFrame, n_targets: Sequence[int], repeats: int, seed: int, cohort: str
) -> pd.DataFrame:
    """Every draw (N_target x repeat) from the pool: participant_id, session, n_target,
    repeat. A draw depends on its N_target, repeat and seed only, not on the others."""
    draws = [
        training_draw(pool, n_target, repeat, seed, cohort).assign(n_target=n_target, repeat=repeat)
        for n_target in n_targets
        for repeat in range(repeats)
    ]
    return pd.concat(draws, ignore_index=True)


def training_draw(
    pool: pd.DataFrame, n_target: int, repeat: int, seed: int, cohort: str
) -> pd.DataFrame:
    """The training subjects (participant_id, session) of one draw, both classes kept."""
    if n_target > len(pool):
        raise ConfigError(
            f"splits.n_target: {n_target} exceeds the {len(pool)} training subjects of "
            f"{cohort} (its first sessions outside the test set and held-out sites); lower it"
        )
    chosen = _draw(pool, n_target, seed * 1000 + repeat)
    if chosen["_label"].nunique() < 2:
        raise ConfigError(
            f"splits.n_target: a draw of {n_target} from {cohort} holds one class only"
        )
    return chosen[[ID_COLUMN, "session"]]


def _test_with_both_classes(
    labels: np.ndarray, test: np.ndarray, seed: int, task: str, classes: tuple[object, object]
) -> np.ndarray:
    """The test fold with a subject of each class of the task, and the pool too.

    A fold stratified by diagnosis, site and sex can leave a rare class out of the test set
    (4 patients of 20, 4 folds), and every test AUC is then undefined; or take all of a
    class, and no training draw can hold it. A subject of the missing class then moves to
    the side that lacks it, and one of the other class the other way when that side can
    spare one, so that both sides keep their sizes.
    """
    for label in (1, 0):
        count = int((labels == label).sum())
        if count < 2:
            raise DataError(
                f"{task}: {count} subject of class {classes[label]} (first sessions, outside "
                "held-out sites); a test AUC needs one in the test set and the training draws "
                "another: add subjects of that class, or choose the task's classes anew"
            )
    rng = np.random.default_rng(seed)
    test = test.copy()
    for label in (0, 1):
        for to_test in (True, False):
            side = test == to_test
            if (labels[side] == label).any():
                continue
            test[rng.choice(np.flatnonzero(~side & (labels == label)))] = to_test
            others = np.flatnonzero(side & (labels != label))
            if len(others) >= 2:
                test[rng.choice(others)] = not to_test
    return test


def _external_rows(table: pd.DataFrame, sites: list[str], cohort: str) -> pd.Series:
    """Rows of the sites held out whole; a site is matched as text or as a number (``3``
    finds a column read as 3.0 because one row has no site)."""
    if "site" not in table.columns:
        raise ConfigError(
            f"splits.external_sites: {cohort}'s table has no 'site' column (it has "
            f"{list(table.columns)[:8]}); add one, or hold out no sites of {cohort}"
        )
    unknown = [site for site in sites if not matches(table["site"], [site]).any()]
    if unknown:
        present = sorted(table["site"].dropna().astype(str).unique())
        raise ConfigError(
            f"splits.external_sites: {unknown} not among {cohort}'s sites {present[:20]}"
        )
    return matches(table["site"], sites)


def _draw(pool: pd.DataFrame, n_target: int, seed: int) -> pd.DataFrame:
    """N_target subjects of the pool, stratified by the task label.

    scikit-learn's stratified split when it gives every class a member; otherwise (a class
    too rare for its share of N_target to reach one subject, a class with one member, fewer
    leftovers than classes) a proportional draw per class that keeps each class.
    """
    if n_target == len(pool):
        return pool
    counts = pool["_label"].value_counts()
    rare_share = counts.min() * n_target / len(pool)
    if len(counts) == 2 and counts.min() >= 2 and len(pool) - n_target >= 2 and rare_share >= 1:
        chosen, _ = train_test_split(
            pool, train_size=n_target, stratify=pool["_label"], random_state=seed
        )
        return chosen
    rng = np.random.default_rng(seed)
    share = {label: count / len(pool) for label, count in counts.items()}
    wanted = {label: max(1, round(n_target * share[label])) for label in counts.index}
    while sum(wanted.values()) > n_target:
        wanted[max(wanted, key=wanted.get)] -= 1
    while sum(wanted.values()) < n_target:
        room = [label for label in counts.index if wanted[label] < counts[label]]
        wanted[max(room, key=lambda label: counts[label] - wanted[label])] += 1
    parts = [
        pool[pool["_label"] == label].iloc[
            rng.choice(counts[label], size=min(n, counts[label]), replace=False)
        ]
        for label, n in wanted.items()
    ]
    return pd.concat(parts)


def split_arguments(settings: dict, **extra: object) -> dict:
    """What split_args.json records: the settings that made the split (those of its
    cohort's role), and ``extra``."""
    return {"settings": dict(settings), **extra}


def drawn_rows(draws: pd.DataFrame, n_target: int, repeat: int, source: str) -> pd.DataFrame:
    """One draw's training subjects (participant_id, session) out of a draws table."""
    chosen = draws[
        (draws["n_target"].astype(int) == n_target) & (draws["repeat"].astype(int) == repeat)
    ]
    if chosen.empty:
        raise DataError(
            f"{source} holds no draw of N_target {n_target}, repeat {repeat}; rerun the "
            "draws (snakemake --forcerun draws)"
        )
    return chosen[[ID_COLUMN, "session"]].reset_index(drop=True)


def run_split(participants: str, outputs: dict, name: str, cohort: dict, settings: dict) -> None:
    """The split job: a converted cohort's subject-level split, and its arguments with each
    side's balance."""
    table = read_table(participants)
    split_settings = SplitSettings(**settings)
    task = cohort.get("task")
    if cohort["role"] == "pretrain" and cohort.get("openbhb_root"):
        split = official_pretrain_split(table, split_settings)
    elif cohort["role"] == "pretrain":
        split = pretrain_split(table, split_settings)
    else:
        labels, in_task = binary_labels(
            table, task["label"], task["positive"], task["negative"], participants
        )
        classes = (task.get("negative") or 0, task.get("positive") or 1)
        split = evaluation_sides(table[in_task], labels[in_task], split_settings, name, classes)
    subjects = first_sessions(split.merge(table, on=["participant_id", "session"]))
    label = task["label"] if cohort["role"] == "evaluate" else None
    balance = split_balance(subjects, subjects["split"], label=label, cohort=name)
    save_table(outputs["split"], split)
    arguments = split_arguments(
        settings, cohort=name, role=cohort["role"], task=task, source=participants, balance=balance
    )
    save_json(outputs["arguments"], arguments)


def run_draws(
    participants: str, split: str, draws: str, name: str, task: dict, settings: dict
) -> None:
    """The draws job: every training draw (N_target x repeat) of one evaluation cohort."""
    pool = task_pool(participants, read_table(split), task)
    save_table(
        draws,
        training_draws(pool, settings["n_target"], settings["repeats"], settings["seed"], name),
    )
