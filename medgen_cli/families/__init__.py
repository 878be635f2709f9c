"""Model families. Each lives in its own sub-package and registers itself by name.

Importing this package registers every built-in family in :mod:`medgen_cli.contract.registry`
(each package ``__init__`` registers import paths only, so this stays light: no torch). The CLI,
the Python API and the demo import it; the registry also names it as its default provider.

Adding a family: create ``medgen_cli/families/<name>/`` whose ``__init__`` calls
:func:`medgen_cli.contract.registry.register`, and add its package name to :data:`BUILTIN`.
"""

from __future__ import annotations

import importlib

#: Built-in family packages, one line each.
BUILTIN: tuple[str, ...] = (
    "sagan",
    "stylegan2",
    "fastgan",
    "dif_gaussian",
    "autoencoder",
    "diffusion",
    "sparse_gan",
)

for _name in BUILTIN:
    importlib.import_module(f"{__name__}.{_name}")
