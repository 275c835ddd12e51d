"""The paper experiments: they reproduce and test the claims of the seed
papers against the installed ``tripletcore``. Not part of the package.

Run them from a checkout's root, for example ``python -m research.paper``
(write-ups beside the code: ``paper.md``, ``theorem3.md``,
``seed_methods.md``). They need matplotlib (``pip install "tripletcore[plot]"``);
``seed_methods`` needs torch and scikit-learn.
"""
