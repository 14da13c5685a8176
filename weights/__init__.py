"""facecloak's shipped weights: the hiding network, the fake-identity bank and their model card.

In the repo this is the top-level ``weights/`` folder; pyproject.toml installs the same folder as
the package ``facecloak.weights``, and ``facecloak.zoo.hiding`` finds the files through
``importlib.resources``. This file only makes the folder an importable package.
"""
