"""Checks of the command line's flags and output folders, made before any work.

Every numeric flag has a range, and a value outside it is reported with the
flag's name. An output folder is never overwritten by accident: a folder that
exists and is not empty is used only with ``--force``; otherwise the first free
numbered sibling (``DIR-1``, ``DIR-2``, ...) is created and used instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

SEED_MAX = 2**64 - 1  # numpy and torch both take seeds up to 2**64 - 1
OVERWRITE_HELP = (
    "a folder that exists and is not empty is kept: the output goes to a fresh "
    "numbered folder DIR-1, DIR-2, ... unless --force is given"
)


class FlagError(Exception):
    """A flag's value is out of range or its folder cannot be used."""


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def check_range(
    flag: str, value: float | None, low: float, high: float, *, low_open: bool = False
) -> None:
    """``low <= value <= high`` (``low < value`` with ``low_open``); ``None`` passes.

    Also refuses NaN and infinity, which argparse's ``float`` accepts.
    """
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        lo = f"> {_num(low)}" if low_open else f">= {_num(low)}"
        hi = "" if math.isinf(high) else f" and <= {_num(high)}"
        raise FlagError(f"{flag} must be {lo}{hi}, got {_num(value)}")


def check_seed(flag: str, value: int) -> None:
    if not 0 <= value <= SEED_MAX:
        raise FlagError(f"{flag} must be an integer from 0 to 2**64 - 1, got {value}")


def _num(v: float) -> str:
    return str(int(v)) if isinstance(v, int) or (math.isfinite(v) and v == int(v)) else str(v)


def output_folder(path: Path, flag: str, force: bool) -> tuple[Path, str | None]:
    """The folder to write to, created now, and a note when it is not ``path``.

    ``path`` itself when it does not exist, is an empty folder, or ``force``
    is set; else the first ``path-K`` (K = 1, 2, ...) that does not exist.
    A file at ``path``, or a folder that cannot be created, is a
    :class:`FlagError` naming ``flag``.
    """
    if not path.name:  # "." or "/": numbered siblings need a name
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise FlagError(f"{flag} '{path}' exists and is not a folder")
    if force or not path.exists() or not any(path.iterdir()):
        _make(path, flag, exist_ok=True)
        return path, None
    k = 1
    while True:
        candidate = path.with_name(f"{path.name}-{k}")
        # exist_ok=False claims the folder: a concurrent run takes the next one
        if not candidate.exists() and _make(candidate, flag, exist_ok=False):
            note = f"{flag} '{path}' is not empty; writing to '{candidate}' (--force overwrites)"
            return candidate, note
        k += 1


def _make(path: Path, flag: str, exist_ok: bool) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        return False
    except OSError as e:
        raise FlagError(f"{flag} '{path}': cannot create the folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FlagError(f"{flag} '{path}': the folder is not writable")
    return True
