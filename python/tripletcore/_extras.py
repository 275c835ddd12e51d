"""Optional dependencies: one ImportError message, naming the extra.

The core needs only NumPy. The PyTorch layer, the Dask functions, the plots
and the LP bounds check for their peers on import and fail with
:func:`missing`'s message, so the error says which
``pip install 'tripletcore[EXTRA]'`` brings the peer.
"""

from __future__ import annotations


def missing(user: str, peer: str, extra: str) -> str:
    """``"<user> needs <peer>: pip install 'tripletcore[<extra>]'"``."""
    return f"{user} needs {peer}: pip install 'tripletcore[{extra}]'"
