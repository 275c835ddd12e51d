"""Experiments that reproduce and test the claims of the seed papers.

Run them as modules, for example ``python -m tripletcore.experiments.paper``.
They need matplotlib (``pip install "tripletcore[plot]"``).
"""
