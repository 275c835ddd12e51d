"""The ``tripletcore`` command-line app: ``demo`` (training on digits with
a report) and ``analyze`` (the geometry of saved embeddings), run as
``tripletcore ...`` or ``python -m tripletcore ...``. The library itself
never imports this subpackage."""
