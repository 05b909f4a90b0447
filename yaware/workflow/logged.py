"""Glue for the Snakemake scripts: logging to the rule's log file, clear failures."""

import logging
import sys
from collections.abc import Callable
from typing import Any

from yaware.errors import YAwareError


def run_logged(log_path: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with logging (and warnings) sent to ``log_path``.

    A :class:`YAwareError` (bad input, with a message naming the file and the fix) ends the
    job with that message in the log and on stderr, without a traceback.
    """
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    try:
        return fn(*args, **kwargs)
    except YAwareError as err:
        logging.getLogger(fn.__module__).error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        logging.getLogger(fn.__module__).exception("unexpected failure")
        raise
