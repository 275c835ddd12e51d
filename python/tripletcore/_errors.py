"""The one exception type for bad input: :class:`InputError`.

Defined here, in Python, and raised by the Rust bindings too (they import
this class; ``rust/python/src/errors.rs`` maps every kernel error to it), so
there is one class whatever layer rejects the input. A Python class rather
than one made by the extension module: it is a plain ``ValueError``
subclass that mypy sees with its attributes, and it pickles by its import
path with ``arg`` and ``kind`` restored (``__reduce__``).
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

__all__ = ["KINDS", "InputError", "bad_input"]

#: The closed set of ``InputError.kind`` values.
KINDS: Final = (
    "nonfinite",  # NaN or infinite values
    "empty",  # no rows or no columns (or nothing to work on)
    "shape",  # wrong number of dimensions, or sizes/lengths that must agree do not
    "zero_norm",  # a row of norm 0 where the cosine distance needs a direction
    "too_large",  # values so large that squared distances overflow the dtype
    "range",  # a value outside the set the argument allows
    "option",  # a string that is not one of the argument's choices
    "layout",  # memory layout (not C-contiguous)
    "device",  # tensors on different devices, or a backend that cannot serve the device
    "conflict",  # arguments that do not go together
)


class InputError(ValueError):
    """An argument was rejected; a ``ValueError``, so ``except ValueError`` catches it.

    ``arg`` is the name of the argument at fault, as the caller spelled it
    (``"X"``, ``"labels"``, ``"embeddings"``, ``"margin"``...); ``kind`` is one
    of :data:`KINDS`. Every message begins with ``arg``.
    """

    arg: str
    kind: str

    def __init__(self, message: str, arg: str, kind: str) -> None:
        if kind not in KINDS:
            raise AssertionError(f"unknown InputError kind {kind!r}")
        super().__init__(message)
        self.arg = arg
        self.kind = kind

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.arg, self.kind))

    def renamed(self, names: dict[str, str]) -> InputError:
        """The same error naming the caller's argument (``names``: old -> new).

        The leading name of the message is replaced too, so the message and
        ``arg`` agree; an ``arg`` not in ``names`` is returned unchanged.
        """
        new = names.get(self.arg)
        if new is None:
            return self
        message = str(self)
        rest = message[len(self.arg) :]
        if message.startswith(self.arg) and not rest[:1].isalnum() and rest[:1] != "_":
            message = new + rest
        return InputError(message, new, self.kind)


def bad_input(message: str, arg: str, kind: str) -> NoReturn:
    """Raise :class:`InputError` (one line at the call sites)."""
    raise InputError(message, arg, kind)
