"""Metric names: one scheme for every family's ``train_step``/``validate``, ``metrics.jsonl`` and
TensorBoard.

A family returns ``{name: float}``; the trainer prefixes ``train/`` or ``val/`` and adds
``lr/<optimizer>`` (optimizers are named by role, ``g`` and ``d``, in a family with players:
``medgen_cli/config/NAMING.md``). A name is a bare ``loss`` / ``grad_norm`` or ``GROUP/NAME``:

=====================  ==================================================================
``loss``               the objective of a family with one optimizer (diffusion, dif-gaussian)
``loss/g``, ``loss/d`` the total each player minimises in a family with players (GANs and
                       the autoencoder, whose decoder is the generator of its patch GAN)
``loss/<term>``        one weighted term of a total: ``loss/d_real``, ``loss/d_fake``,
                       ``loss/gp``, ``loss/r1``, ``loss/pl``, ``loss/l1``, ``loss/kl`` ...
``grad_norm[/<role>]`` gradient norm before clipping (``grad_norm/g``, ``grad_norm/d``)
``d/real``, ``d/fake`` mean discriminator output on real and on generated inputs
``share/<term>``       a weighted term's share of its player's total magnitude, in [0, 1]
``aug/<name>``         augmentation state (``aug/p``, ``aug/rt``)
``stats/<name>``       other diagnostics: unweighted penalties, distances, counts
=====================  ==================================================================

Validation returns quality measures under bare names (``fid``, ``kid``, ``psnr``, ``ssim``,
``l1``, ``loss``) and diagnostics under ``stats/``.
"""

from __future__ import annotations

import re

#: Roles of adversarial players in ``loss/<role>`` and ``grad_norm/<role>``.
ROLES = ("g", "d")
GROUPS = ("loss", "grad_norm", "d", "share", "aug", "stats")
_NAME = re.compile(r"(loss|grad_norm)|(%s)/[a-z0-9_]+" % "|".join(GROUPS))
_VALIDATION_BARE = re.compile(r"[a-z0-9_]+")


def is_train_metric(name: str) -> bool:
    """Whether ``name`` (without the ``train/`` prefix) follows the scheme."""
    if not _NAME.fullmatch(name):
        return False
    group, _, rest = name.partition("/")
    if group == "d":
        return rest in ("real", "fake")
    if group == "grad_norm" and rest:
        return rest in ROLES
    return True


def is_val_metric(name: str) -> bool:
    """Whether a validation metric name (without ``val/``) follows the scheme."""
    return bool(_VALIDATION_BARE.fullmatch(name)) or name.startswith("stats/") and is_train_metric(name)


def shares(terms: dict[str, float]) -> dict[str, float]:
    """``share/<term>``: each weighted term's share of the total magnitude, so a term that drowns
    the others is visible in the logs (a feature-matching term at 35% once hid a GAN term at 18%)."""
    total = sum(abs(v) for v in terms.values())
    if total == 0:
        return {f"share/{k}": 0.0 for k in terms}
    return {f"share/{k}": abs(v) / total for k, v in terms.items()}
