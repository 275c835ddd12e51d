"""The string options of the public API, defined once for every layer.

The NumPy functions, the torch layer and the Dask functions all check their
options here, so a choice and its error message are the same everywhere.
The torch backends are a registry (``tripletcore.torch._backend``); their
built-in names are listed here.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeVar, get_args

from ._errors import InputError

__all__ = [
    "BACKENDS",
    "FALLBACKS",
    "METRICS",
    "MININGS",
    "REDUCTIONS",
    "Fallback",
    "Metric",
    "Mining",
    "Reduction",
    "ScalarReduction",
    "as_choice",
]

#: The option types of the signatures; the tuples below are read from them.
Metric = Literal["euclidean", "sqeuclidean", "cosine"]
Mining = Literal["batch_hard", "semi_hard", "batch_all"]
ScalarReduction = Literal["mean", "sum", "mean_nonzero"]
Reduction = Literal[ScalarReduction, "none"]
Fallback = Literal["hardest", "easiest", "drop"]

METRICS: Final[tuple[Metric, ...]] = get_args(Metric)
MININGS: Final[tuple[Mining, ...]] = get_args(Mining)
REDUCTIONS: Final[tuple[Reduction, ...]] = (*get_args(ScalarReduction), "none")
FALLBACKS: Final[tuple[Fallback, ...]] = get_args(Fallback)
#: The torch layer's built-in backends, in "auto"'s order of preference ("auto"
#: takes the first that serves the device: Triton on CUDA, Rust on CPU, tiled torch
#: elsewhere).
BACKENDS: Final = ("auto", "triton", "rust", "torch")


_Choice = TypeVar("_Choice", bound=str)


def as_choice(value: Any, name: str, choices: tuple[_Choice, ...]) -> _Choice:
    """``value`` if it is one of ``choices``, else ``InputError(kind="option")``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(
            f"unknown {name} {value!r}; expected one of {', '.join(choices)}", name, "option"
        )
    return value
