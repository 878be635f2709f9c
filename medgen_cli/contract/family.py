"""The family contract: what a model family supplies to the shared trainer.

A family is a network + a loss. It builds its modules and optimizers, turns one batch into
optimizer updates (through ``ctx`` so AMP, clipping and EMA stay in the trainer), validates,
and samples. The trainer knows no family by name.

Lifecycle (training)::

    fam = FamilyClass(cfg)                # cfg: the family's validated config model
    fam.build(device)                     # create self.modules / self.optimizers
    ds = fam.train_dataset(); val = fam.val_dataset()
    # trainer wraps modules for DDP, creates EMA copies, schedulers, scalers
    for batch in loader: metrics = fam.train_step(batch, ctx)   # names: contract/metric_names.py
    fam.validate(val_batches, ctx) -> metrics   # uses ctx.eval_module(name) (EMA when enabled)

Lifecycle (inference, ``medgen sample`` / ``interpolate`` / ``recon`` / Python API)::

    fam = FamilyClass(cfg); fam.build(device); <weights and family state loaded>
    if isinstance(fam, Sampling):                                   # contract/capabilities.py
        opts = parse_options(fam.sample_options, {"num": 4}, fam, "sample")   # typed, strict
        samples = fam.sample(opts, ctx)    # arrays + seeds, labels, affine (no files)
    medgen_cli.engine.outputs.write_samples(samples, out, opts.format, ...)   # shared writers

A family that samples inherits :class:`~medgen_cli.contract.capabilities.Sampling` parametrised
by its options model (a subclass of :class:`~medgen_cli.contract.options.SampleOptions`), sets
``sample_options`` to it and implements ``sample``; the same for ``Interpolating`` and
``Reconstructing``. ``Family`` itself is generic in the config model, so ``self.cfg`` and
``resolve_config`` have the family's own config type.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Iterable, TypeVar

from medgen_cli.contract.capabilities import CAPABILITY_OF

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from medgen_cli.contract.config import FamilyConfig
    from medgen_cli.contract.context import TrainContext

#: The family's config model (``Family[DiffusionConfig]``).
C = TypeVar("C", bound="FamilyConfig")


def warmup_ema_fn(decay: float) -> Any:
    """``AveragedModel`` ``multi_avg_fn`` with decay ``min(decay, (1 + n) / (10 + n))`` at update ``n``.

    A fixed decay of 0.999 keeps ~37% of the random initial weights after 1,000 steps, so early
    samples (and validation, which uses the EMA) come from a model still a third random, and a
    best.pt chosen early (a diffusion model on a few hundred shapes is best after ~1,500 steps)
    is one; the warm-up follows the online weights closely at first and reaches ``decay`` after
    ~10/(1 − decay) updates (diffusers' ``EMAModel`` rule when ``use_ema_warmup`` is off).
    Floating tensors only: the trainer copies integer buffers (the generator's seed grid,
    BatchNorm's counter) itself (:func:`medgen_cli.engine.ema.exact_non_float`).
    """
    import torch

    @torch.no_grad()
    def update(ema: list[Any], model: list[Any], n_averaged: Any) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema, model, 1.0 - d)

    return update


class Family(Generic[C]):
    """Base class of all model families, generic in the family's config model.

    Class attributes a family sets:
        name: registry name (``medgen train <name>``).
        ema_modules: names in ``self.modules`` that get an EMA copy when ``trainer.ema.enabled``.
        key_metric: validation metric used for ``best.pt`` (``None`` = no best.pt).
        key_mode: ``"min"`` or ``"max"`` for ``key_metric``.
        ddp_unused_parameters: names in ``self.modules`` whose forward passes leave some parameters
            out of a loss, or that run several forwards per backward (a discriminator's decoders
            used on real images only): under DDP they are not wrapped; their optimizers' gradients
            are averaged over the ranks in ``TrainContext.step`` instead (DDP stops such a run).
        cpu_autocast: ``trainer.amp: auto`` trains in bf16 on CPUs with native bf16 instructions
            (set only where bf16 was measured to train as well as fp32 at equal steps).

    Attributes set by ``build``:
        modules: name -> ``nn.Module`` (all saved in checkpoints).
        optimizers: name -> optimizer (saved; the trainer adds warm-up/schedules, clipping, AMP).
    """

    name: ClassVar[str] = ""
    ema_modules: ClassVar[tuple[str, ...]] = ()
    key_metric: ClassVar[str | None] = None
    key_mode: ClassVar[str] = "min"
    ddp_unused_parameters: ClassVar[tuple[str, ...]] = ()
    cpu_autocast: ClassVar[bool] = False

    def __init__(self, cfg: C) -> None:
        self.cfg: C = cfg
        self.run_dir: Path | None = None
        self.modules: dict[str, torch.nn.Module] = {}
        #: Voxel-to-world matrix of the family's volumes (4x4 nested list); ``None``: images/unknown.
        self.affine: list[list[float]] | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # ---- building -----------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, cfg: C) -> C:
        """Fill the values a fresh run derives from elsewhere (another run, the data's manifest)
        *before* its folder and ``config.yaml`` are written, so ``config.yaml``, every checkpoint
        and ``build`` agree and the run can be rebuilt from itself. ``build`` must not change the
        config. Not called on resume (the saved config is already resolved)."""
        return cfg

    def build(self, device: torch.device) -> None:
        """Create ``self.modules`` (on ``device``) and ``self.optimizers``."""
        raise NotImplementedError

    def train_dataset(self) -> Dataset:
        """The training dataset (the trainer batches, shuffles and shards it)."""
        raise NotImplementedError

    def val_dataset(self) -> Dataset | None:
        """Validation dataset, or ``None``. Batched by the trainer with ``trainer.batch_size``."""
        return None

    def training_notes(self, train_set: Dataset) -> list[str]:
        """Lines the trainer logs once before the first step, after the datasets are built: what
        a user should know about this run's setup before spending hours on it (e.g. a generator
        budget the data exceed). Default: none."""
        return []

    def check_data(self) -> None:
        """Cheap checks of the input files (e.g. every volume's header and completeness), run
        before the run folder is created, so a bad file is named in one line and costs no folder.

        Raises:
            MedgenError: a missing, unreadable or truncated input (named).
        """

    def collate_fn(self) -> Any:
        """A custom collate function for the DataLoader, or ``None`` for torch's default."""
        return None

    def prepare(self, ctx: TrainContext) -> None:
        """Called once after ``build`` and before a checkpoint (if resuming) is restored, then
        training starts. Use it for one-off setup (e.g. a latent scale factor); what it computes
        and must survive a resume belongs in ``state_dict`` (restored values win)."""

    def ema_decay(self, configured: float) -> float:
        """Per-step EMA decay; override to derive it (e.g. from a half-life in images)."""
        return configured

    def ema_avg_fn(self, decay: float) -> Any:
        """The ``multi_avg_fn`` of the EMA copies (``AveragedModel``): ``decay`` warmed up over
        the first updates (``trainer.ema.warmup``, :func:`warmup_ema_fn`)
        or fixed; override for another ramp-up (the 2D GANs': StyleGAN2-ADA's, in images seen)."""
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        return warmup_ema_fn(decay) if self.cfg.trainer.ema.warmup else get_ema_multi_avg_fn(decay)

    # ---- training -----------------------------------------------------------------------
    def train_step(self, batch: Any, ctx: TrainContext) -> dict[str, float]:
        """One training step on ``batch`` (GANs: one D update and, on the steps
        :mod:`medgen_cli.families.adversarial` says, one G update). Return float metrics named
        as :mod:`medgen_cli.contract.metric_names` describes (the contract suite checks them).

        Use ``ctx.net(name)`` for forward passes (DDP-wrapped when distributed), ``ctx.autocast()``
        around forward passes, ``ctx.backward(loss, opt_name)`` and ``ctx.step(opt_name)``.
        """
        raise NotImplementedError

    def validate(self, batches: Iterable[Any], ctx: TrainContext) -> dict[str, float]:
        """Validation metrics over ``batches`` (the val set's batches on ``ctx.device``, limited by
        ``trainer.val_batches``; empty when the family has no val set, e.g. when it validates
        by sampling). Use ``ctx.eval_module(name)`` so EMA weights are used. Quality metrics take
        bare names (``fid``, ``psnr``, ``loss``); the trainer prefixes ``val/``."""
        return {}

    def on_train_end(self, ctx: TrainContext) -> None:
        """Called on every rank after the last step (before the final checkpoint)."""

    def log_images(self, ctx: TrainContext) -> None:
        """Periodic images (e.g. sample slices) through ``ctx.add_image``; rank 0 only."""

    # ---- extra state that must survive a resume (e.g. ADA p, latent scale factor) ------------
    def state_dict(self) -> dict[str, Any]:
        """Family state beyond modules/optimizers. Tensors, numbers, strings, lists, dicts only."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # ---- inference: see medgen_cli.contract.capabilities ----------------------------------------
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A family that declares an options model without inheriting its capability would never be
        asked to use it: refuse it when the class is defined, not when a user samples."""
        super().__init_subclass__(**kwargs)
        for attr, capability in CAPABILITY_OF.items():
            if attr in vars(cls) and not issubclass(cls, capability):
                raise TypeError(f"{cls.__name__} sets {attr} but does not inherit "
                                f"{capability.__name__}[...] (medgen_cli.contract.capabilities)")
