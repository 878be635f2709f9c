"""Model families. Each lives in its own sub-package and registers itself by name.

Adding a family: create ``medgen_cli/families/<name>/`` whose ``__init__`` calls
:func:`medgen_cli.families.registry.register`, and add its package name to :data:`BUILTIN`.
"""

from __future__ import annotations

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
