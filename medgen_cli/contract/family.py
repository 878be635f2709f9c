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
    opts = parse_options(fam.sample_options, {"num": 4}, fam, "sample")   # typed, strict
    samples = fam.sample(opts, ctx)        # arrays + seeds, labels, affine (no files)
    medgen_cli.engine.outputs.write_samples(samples, out, opts.format, ...)   # shared writers

A family that samples sets ``sample_options`` to its options model (a subclass of
:class:`~medgen_cli.contract.options.SampleOptions`) and implements :meth:`Family.sample`; the
same for ``interpolate_options``/:meth:`Family.interpolate` and ``recon_options``/:meth:`Family.recon`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from medgen_cli.contract.config import FamilyConfig
    from medgen_cli.contract.context import InferenceContext, TrainContext
    from medgen_cli.contract.options import InterpolateOptions, ReconOptions, SampleOptions
    from medgen_cli.contract.samples import Samples


class Family:
    """Base class of all model families.

    Class attributes a family sets:
        name: registry name (``medgen train <name>``).
        ema_modules: names in ``self.modules`` that get an EMA copy when ``trainer.ema.enabled``.
        key_metric: validation metric used for ``best.pt`` (``None`` = no best.pt).
        key_mode: ``"min"`` or ``"max"`` for ``key_metric``.

    Attributes set by ``build``:
        modules: name -> ``nn.Module`` (all saved in checkpoints).
        optimizers: name -> optimizer (saved; the trainer adds warm-up/schedules, clipping, AMP).
    """

    name: ClassVar[str] = ""
    ema_modules: ClassVar[tuple[str, ...]] = ()
    key_metric: ClassVar[str | None] = None
    key_mode: ClassVar[str] = "min"

    def __init__(self, cfg: FamilyConfig) -> None:
        self.cfg = cfg
        self.run_dir: Path | None = None
        self.modules: dict[str, torch.nn.Module] = {}
        #: Voxel-to-world matrix of the family's volumes (4x4 nested list); ``None``: images/unknown.
        self.affine: list[list[float]] | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    # ---- building -----------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, cfg: FamilyConfig) -> FamilyConfig:
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
        """The ``multi_avg_fn`` of the EMA copies (``AveragedModel``): a fixed ``decay`` here;
        override for a decay that depends on the number of updates so far (a ramp-up)."""
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        return get_ema_multi_avg_fn(decay)

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

    # ---- inference (see medgen_cli.contract.options) ------------------------------------
    #: Options model of ``sample`` / ``interpolate`` / ``recon``; ``None``: the family cannot.
    sample_options: ClassVar[type[SampleOptions] | None] = None
    interpolate_options: ClassVar[type[InterpolateOptions] | None] = None
    recon_options: ClassVar[type[ReconOptions] | None] = None

    def sample(self, opts: SampleOptions, ctx: InferenceContext) -> Samples:
        """``opts.num`` samples; sample ``i`` comes from seed ``opts.seed + i`` alone."""
        raise NotImplementedError(f"family '{self.name}' does not sample")

    def interpolate(self, opts: InterpolateOptions, ctx: InferenceContext) -> Samples:
        """``opts.steps`` frames from the sample of ``opts.seed_a`` to that of ``opts.seed_b``."""
        raise NotImplementedError(f"family '{self.name}' does not interpolate")

    def recon(self, opts: ReconOptions, ctx: InferenceContext) -> Samples:
        """The reconstruction of ``opts.input``."""
        raise NotImplementedError(f"family '{self.name}' does not reconstruct")

    def recon_notes(self, opts: ReconOptions) -> list[str]:
        """Lines a user reads before ``recon`` starts (e.g. the grid it works on); none by default."""
        return []
