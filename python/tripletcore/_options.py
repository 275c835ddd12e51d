"""The string options of the public API, defined once for every layer.

The NumPy functions, the torch layer and the Dask functions all check their
options here, so a choice and its error message are the same everywhere.
The torch backends are a registry (``tripletcore.torch._backend``); their
built-in names are listed here.
"""

from __future__ import annotations

from typing import Any, Final

from ._errors import InputError

__all__ = [
    "BACKENDS",
    "FALLBACKS",
    "METRICS",
    "MININGS",
    "REDUCTIONS",
    "as_choice",
]

METRICS: Final = ("euclidean", "sqeuclidean", "cosine")
MININGS: Final = ("batch_hard", "semi_hard", "batch_all")
REDUCTIONS: Final = ("mean", "sum", "mean_nonzero", "none")
FALLBACKS: Final = ("hardest", "easiest", "drop")
#: The torch layer's built-in backends, in "auto"'s order of preference ("auto"
#: takes the first that serves the device: Triton on CUDA, Rust on CPU, tiled torch
#: elsewhere).
BACKENDS: Final = ("auto", "triton", "rust", "torch")


def as_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ``InputError(kind="option")``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(
            f"unknown {name} {value!r}; expected one of {', '.join(choices)}", name, "option"
        )
    return value
