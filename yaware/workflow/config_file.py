"""The workflow's YAML config file read before Snakemake reads it, to name a syntax error.

Snakemake says only "Config file is not valid JSON or YAML" for a tab or an unclosed
bracket; this names the line, the column and what YAML found there.
"""

import os
from pathlib import Path

import yaml


def check_yaml(path: str | os.PathLike) -> None:
    """Raise ValueError naming the line and column of a YAML syntax error in ``path``, or
    saying that it is empty or no mapping; a file that is not there is left to Snakemake
    (a --configfile may stand in for it)."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    try:
        content = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        if mark is None:
            raise ValueError(f"{path} is not valid YAML: {err}") from None
        lines = text.splitlines() or [""]
        line = lines[min(mark.line, len(lines) - 1)]
        hint = "; YAML indents with spaces, never tabs" if "\t" in line else ""
        raise ValueError(
            f"{path}, line {mark.line + 1}, column {mark.column + 1}: "
            f"{err.problem or err.context}{hint}"
        ) from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if content is None:
        raise ValueError(
            f"{path} is empty (or holds comments only): the workflow's settings go there. "
            "Restore it from git (git checkout -- config/config.yaml), or copy "
            "config/paper.yaml there"
        )
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} holds a {type(content).__name__}, not a mapping of keys at the top "
            "level (such as 'synthetic:' and 'pretraining:'); see docs/config.md"
        )
