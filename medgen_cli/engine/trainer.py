"""The one shared trainer: a step loop over a family's ``train_step``.

It owns everything that is not the model: devices and DDP, AMP and loss scaling, EMA, gradient
clipping, LR warm-up and schedules, validation cadence and ``best.pt``, checkpoints and exact
resume, logging (rich progress, TensorBoard, metrics.jsonl, log.txt) and signal handling.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Iterator

import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from medgen_cli.contract.config import FamilyConfig
from medgen_cli.config.migrations import migrate_checkpoint_states, stamped
from medgen_cli.engine import checkpoint as ckpt_io
from medgen_cli.contract.context import TrainContext
from medgen_cli.engine.data_wait import DATA_WAIT, DataWaitMeter
from medgen_cli.engine.ema import exact_non_float
from medgen_cli.engine.divergence import divergence_error, nonfinite_val_warnings, nonfinite_weights, step_problem
from medgen_cli.engine.distributed import (ResumableSampler, all_gather_object, all_reduce_mean, broadcast_object,
                                           env_world, init_distributed, sync_buffers)
from medgen_cli.engine.logging import RunLogger
from medgen_cli.engine.outcome import TrainingInterrupted, TrainResult  # noqa: F401  (re-exported: callers import them from here)
from medgen_cli.engine.run_loading import load_run
from medgen_cli.engine.rundir import RunDir
from medgen_cli.engine.runtime import (StopFlag, amp_notes, copy_into, limited, move_to, preserved_rng, resolve_amp,
                                       seed_everything, to_channels_last)
from medgen_cli.devices import resolve_device
from medgen_cli.engine.schedules import apply_base_lrs, lr_multiplier
from medgen_cli.engine.selection import BestSelection, Verdict
from medgen_cli.errors import MedgenError
from medgen_cli.contract.family import Family


class Trainer:
    """Runs one family to ``trainer.max_steps`` (or ``max_epochs``), resuming if asked.

    Args:
        cfg: the family's validated config.
        family: an unbuilt family instance.
        run: the run directory (``None`` on non-zero ranks and in ``fast_dev_run``).
        resume: a loaded checkpoint to continue from.
    """

    def __init__(self, cfg: FamilyConfig, family: Family, run: RunDir | None,
                 resume: dict[str, Any] | None = None, logger: RunLogger | None = None) -> None:
        self.cfg = cfg
        self.tcfg = cfg.trainer
        self.family = family
        self.run = run
        self.resume = resume
        self.rank, self.local_rank, self.world_size = env_world()
        self.device = resolve_device(self.tcfg.device, self.local_rank, setting="trainer.device")
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        # best.pt's rule (key metric, guard floor) and the plateau counters, saved as a checkpoint's "best"
        self.selection = BestSelection.from_config(family.key_metric, family.key_mode, self.tcfg)
        self.saved_step: int | None = None  # the step of the newest latest.pt (None: none yet)
        self._logger = logger
        self._wait = DataWaitMeter()

    @property
    def best_value(self) -> float | None:
        return self.selection.value

    # ---- setup ----------------------------------------------------------------------------
    def _setup(self) -> TrainContext:
        init_distributed(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        seed_everything(self.tcfg.seed)
        fam = self.family
        fam.run_dir = self.run.root if self.run else None
        if self.run is not None and self.rank == 0:
            for leftover in self.run.checkpoints.glob(".*.part*"):
                leftover.unlink(missing_ok=True)  # from a write cut short by a crash
        fam.build(self.device)
        if self.tcfg.channels_last:
            for mod in fam.modules.values():
                to_channels_last(mod)
        amp_dtype = self.amp_dtype = resolve_amp(self.tcfg.amp, self.device, type(fam).cpu_autocast)
        use_scaler = amp_dtype == torch.float16
        scalers = {n: torch.amp.GradScaler(self.device.type) for n in fam.optimizers} if use_scaler else {}
        scheduled = lr_multiplier(self.tcfg.lr_schedule, lambda: self.tcfg.max_steps)

        def mult(step: int) -> float:  # plateau cuts (engine/selection.py) on top of the schedule
            return scheduled(step) * self.selection.lr_factor

        self.schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, mult) for n, o in fam.optimizers.items()}
        ema: dict[str, AveragedModel] = {}
        if self.tcfg.ema.enabled:
            decay = fam.ema_decay(self.tcfg.ema.decay)
            for name in fam.ema_modules:
                ema[name] = AveragedModel(fam.modules[name], multi_avg_fn=exact_non_float(fam.ema_avg_fn(decay)),
                                          use_buffers=True)
        wrapped = dict(fam.modules)
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            for name, mod in fam.modules.items():  # ddp_unused_parameters: gradients averaged in ctx.step
                if any(p.requires_grad for p in mod.parameters()) and name not in fam.ddp_unused_parameters:
                    wrapped[name] = DDP(mod, device_ids=ids, broadcast_buffers=False)
        by_hand = {id(p) for n in fam.ddp_unused_parameters for p in fam.modules[n].parameters()}
        ctx = TrainContext(
            device=self.device, modules=fam.modules, wrapped=wrapped, optimizers=fam.optimizers, ema=ema,
            scalers=scalers, amp_dtype=amp_dtype, grad_clip=self.tcfg.grad_clip, rank=self.rank,
            world_size=self.world_size, run_dir=fam.run_dir, resuming=self.resume is not None, load_run=load_run,
            grad_average=frozenset(o for o, opt in fam.optimizers.items()
                                   if any(id(p) in by_hand for g in opt.param_groups for p in g["params"])),
        )
        fam.prepare(ctx)
        if self.resume is not None:
            built = {name: list(sch.base_lrs) for name, sch in self.schedulers.items()}
            self._restore(self.resume, ctx)
            # The config's learning rates win over the checkpoint's (a diverged run resumes with a
            # lower one); unchanged rates are equal to the saved ones, so exact resume is kept.
            apply_base_lrs(self.schedulers, built)
        # Different augmentation streams per rank, identical model init (seeded above).
        if self.world_size > 1 and self.resume is None:
            seed_everything(self.tcfg.seed + self.rank)
        return ctx

    def _restore(self, ck: dict[str, Any], ctx: TrainContext) -> None:
        fam = self.family
        migrate_checkpoint_states(ck)  # optimizer names of older medgens
        ckpt_io.load_module_states(fam.modules, ck.get("modules", {}), "the resume checkpoint")
        try:
            for name, opt in fam.optimizers.items():
                opt.load_state_dict(ck["optimizers"][name])
            for name, sch in self.schedulers.items():
                sch.load_state_dict(ck["schedulers"][name])
            for name, scaler in ctx.scalers.items():
                if name in ck.get("scalers", {}):
                    scaler.load_state_dict(ck["scalers"][name])
            for name, avg in ctx.ema.items():
                if name in ck.get("ema", {}):
                    avg.load_state_dict(ck["ema"][name])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise MedgenError(
                f"checkpoint does not match this model: {str(exc).splitlines()[0]}",
                "resume with the run's own config; model settings cannot change on resume",
            ) from exc
        fam.load_state_dict(ck.get("family_state", {}))
        self.step, self.epoch, self.batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        self.saved_step = self.step
        self.selection.load_state_dict(ck.get("best") or {})
        self._restore_rng(ck)

    def _restore_rng(self, ck: dict[str, Any]) -> None:
        """This rank's RNG streams as saved, so a resumed DDP run draws the noise it would have drawn."""
        ranks = ck.get("rng_ranks")
        if self.world_size > 1 and ranks is not None and len(ranks) == self.world_size:
            ckpt_io.restore_rng(ranks[self.rank])
            return
        ckpt_io.restore_rng(ck["rng"])
        if self.world_size > 1:
            # A checkpoint of another world size (or an older medgen) holds no state for this rank:
            # distinct streams per rank still, a function of (seed, rank, step).
            seed_everything(self.tcfg.seed + self.rank + 7919 * self.step)

    # ---- checkpoints ------------------------------------------------------------------------
    def _payload(self, ctx: TrainContext, rng_ranks: list[Any] | None = None) -> dict[str, Any]:
        fam = self.family
        return {
            "family": fam.name,
            "config": stamped(self.cfg),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "finished": self._finished(),
            "best": self.selection.state_dict(),
            "modules": {n: m.state_dict() for n, m in fam.modules.items()},
            "optimizers": {n: o.state_dict() for n, o in fam.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in ctx.scalers.items()},
            "ema": {n: a.state_dict() for n, a in ctx.ema.items()},
            "family_state": fam.state_dict(),
            "rng": ckpt_io.capture_rng(),
            **({"rng_ranks": rng_ranks} if rng_ranks is not None else {}),
        }

    def _save(self, ctx: TrainContext, names: list[str]) -> None:
        # Every rank checks (DDP weights are equal), so all stop together.
        bad = nonfinite_weights(self.family.modules, ctx.ema)
        if bad is not None:
            raise self._diverged(f"the weights of '{bad}' are not finite")
        if "latest" in names:
            self.saved_step = self.step
        # Every rank's RNG streams (each rank draws its own noise), for an exact resume under DDP.
        rng_ranks = all_gather_object(ckpt_io.capture_rng()) if self.world_size > 1 else None
        if self.run is None or self.rank != 0:
            return
        paths = [self.run.step_ckpt(self.step) if n == "step" else self.run.checkpoints / f"{n}.pt" for n in names]
        ckpt_io.save_checkpoint(self._payload(ctx, rng_ranks), paths)
        if "step" in names:
            ckpt_io.prune_step_checkpoints(self.run.checkpoints, self.tcfg.keep_last)

    # ---- loop ---------------------------------------------------------------------------------
    def _finished(self) -> bool:
        if self.selection.stopped:  # trainer.early_stop_patience evaluations without a new best.pt
            return True
        if self.step >= self._max_steps():
            return True
        return self.tcfg.max_epochs is not None and self.epoch >= self.tcfg.max_epochs

    def _max_steps(self) -> int:
        return self.tcfg.fast_dev_run_batches if self.tcfg.fast_dev_run else self.tcfg.max_steps

    def _loader(self, dataset: Any, sampler: Any, shuffle_seed: int) -> DataLoader:
        gen = torch.Generator()
        gen.manual_seed(shuffle_seed)  # worker seeds: a function of (seed, epoch), not of global RNG
        return DataLoader(
            dataset, batch_size=self.tcfg.batch_size, sampler=sampler, num_workers=self.tcfg.num_workers,
            collate_fn=self.family.collate_fn(), pin_memory=self.device.type == "cuda", generator=gen,
            drop_last=False,
        )

    def _epochs(self, dataset: Any) -> Iterator[Any]:
        sampler = ResumableSampler(len(dataset), self.tcfg.batch_size, self.tcfg.seed, self.rank, self.world_size)
        if sampler.batches_per_epoch() == 0:
            raise MedgenError(
                f"the training set has {len(dataset)} item(s), fewer than one batch of {self.tcfg.batch_size}"
                + (f" per each of {self.world_size} processes" if self.world_size > 1 else ""),
                "lower trainer.batch_size or add data",
            )
        while True:
            if self.batch_in_epoch >= sampler.batches_per_epoch():
                self.epoch += 1
                self.batch_in_epoch = 0
                if self._finished():
                    return
            sampler.set_position(self.epoch, self.batch_in_epoch)
            for batch in self._loader(dataset, sampler, self.tcfg.seed * 7919 + self.epoch):
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0
            if self._finished():
                return

    def _validate(self, ctx: TrainContext, val_set: Any, logger: RunLogger) -> dict[str, float]:
        with preserved_rng():
            raw = self._run_validation(ctx, val_set)
        if self.world_size > 1:
            # Rank 0's metrics decide for every rank (validation may draw per-rank noise), so all
            # ranks agree on best.pt and save it together.
            raw = broadcast_object(raw)
        metrics = {k if k.startswith("val/") else f"val/{k}": float(v) for k, v in raw.items()}
        verdict = self.selection.judge(metrics, self.step)
        if verdict.floor is not None:  # next to the guard in TensorBoard's val group (val/coverage_floor)
            metrics[f"{self.selection.guard}_floor"] = verdict.floor
        logger.scalars(self.step, self.epoch, metrics)
        if metrics:
            logger.info(f"step {self.step} validation: " + ", ".join(f"{k}={v:.5g}" for k, v in metrics.items()))
        for line in nonfinite_val_warnings(metrics, self.family.key_metric, self.step):
            logger.warning(line)  # e.g. psnr=inf on constant data: a problem, never a best value
        self._apply_verdict(ctx, verdict, logger)
        return metrics

    def _run_validation(self, ctx: TrainContext, val_set: Any) -> dict[str, float]:
        fam = self.family
        batches: Any = []
        if val_set is not None:
            gen = torch.Generator()
            gen.manual_seed(self.tcfg.seed)
            loader = DataLoader(val_set, batch_size=self.tcfg.batch_size, shuffle=False, generator=gen,
                                num_workers=self.tcfg.num_workers, collate_fn=fam.collate_fn())
            limit = self.tcfg.fast_dev_run_batches if self.tcfg.fast_dev_run else self.tcfg.val_batches
            batches = limited((move_to(b, self.device) for b in loader), limit)
        for m in fam.modules.values():
            m.eval()
        for a in ctx.ema.values():
            a.eval()
        try:
            with torch.no_grad():
                return fam.validate(batches, ctx)
        finally:
            for m in fam.modules.values():
                m.train()

    def _apply_verdict(self, ctx: TrainContext, verdict: Verdict, logger: RunLogger) -> None:
        """Write best.pt for a new best; a plateau cut takes effect now, not at the next schedule step.
        (Every rank judges rank 0's metrics, so all agree.)"""
        for note in verdict.notes:
            logger.info(note)
        if verdict.new_best:
            self._save(ctx, ["best"])
            logger.info(f"new best {self.selection.key}={self.selection.value:.5g} at step {self.step} → best.pt")
        if verdict.lr_changed:
            for sch in self.schedulers.values():
                for group, base, fn in zip(sch.optimizer.param_groups, sch.base_lrs, sch.lr_lambdas):
                    group["lr"] = base * fn(sch.last_epoch)

    def _after_step(self, ctx: TrainContext, raw: dict[str, float], logger: RunLogger, val_set: Any) -> None:
        self.step += 1
        self.batch_in_epoch += 1
        ctx.global_step = self.step
        if self.world_size > 1:
            sync_buffers(self.family.modules.values())
        for name, avg in ctx.ema.items():
            if self.step <= self.tcfg.ema.start_step:
                copy_into(avg.module, self.family.modules[name])
            else:
                avg.update_parameters(self.family.modules[name])
        # A schedule counts its own optimizer's updates (a GAN's G may step less often than D,
        # an adversarial term may start late), so only schedulers whose optimizer stepped advance.
        for name, sch in self.schedulers.items():
            if name in ctx.stepped:
                sch.step()
        ctx.stepped.clear()
        metrics = {k if k.startswith("train/") else f"train/{k}": float(v) for k, v in raw.items()}
        logger.progress(self.step, self.epoch, metrics)
        t = self.tcfg
        if self.step % t.log_every == 0:
            metrics = all_reduce_mean({**metrics, DATA_WAIT: self._wait.share()}, self.device)
            self._wait.reset()
            for name, opt in self.family.optimizers.items():
                metrics[f"lr/{name}"] = opt.param_groups[0]["lr"]
            logger.scalars(self.step, self.epoch, metrics)
        if self.step % t.image_every == 0 and self.rank == 0:
            was = {n: m.training for n, m in self.family.modules.items()}
            with torch.no_grad(), preserved_rng():
                self.family.log_images(ctx)
            for n, m in self.family.modules.items():
                m.train(was[n])
        if self.step % t.val_every == 0:
            self._validate(ctx, val_set, logger)
        if self.step % t.ckpt_every == 0:
            self._save(ctx, ["latest", "step"])

    def fit(self) -> TrainResult:
        """Train until finished or interrupted; always leaves a consistent ``latest.pt``."""
        ctx = self._setup()
        fam = self.family
        if self._finished():
            return TrainResult(self.run.root if self.run else None, self.step, self.epoch, self.best_value, {})
        train_set, val_set = fam.train_dataset(), fam.val_dataset()
        logger = self._logger or RunLogger(self.run.root if self.run else None, self.rank == 0,
                                           self._max_steps(), self.step)
        ctx.writer = logger.writer
        ctx.global_step = self.step
        last: dict[str, float] = {}
        interrupted = False
        t0 = time.perf_counter()
        with logger, StopFlag() as stop:
            precision = f" in {str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp_dtype else ""
            logger.info(f"{fam.name}: training on {self.device}{precision} from step {self.step} to {self._max_steps()}"
                        + (f" with {self.world_size} processes" if self.world_size > 1 else ""))
            if self.rank == 0:  # only rank 0 logs: the other ranks skip the work
                notes = amp_notes(self.amp_dtype, self.device)
                notes += fam.training_notes(train_set) if self.step == 0 else []
                for note in notes:
                    logger.info(f"note: {note}")
            for module in fam.modules.values():
                module.train()
            for batch in self._wait.timed(self._epochs(train_set)):
                last = fam.train_step(move_to(batch, self.device), ctx)
                self._wait.step_done()
                self._check_finite(last, ctx, logger)
                self._after_step(ctx, last, logger, val_set)
                if self._stop_requested(stop):
                    interrupted = True
                    break
                if self.step >= self._max_steps() or self.selection.stopped:
                    break
            if not interrupted and (self.step % self.tcfg.val_every != 0):
                self._validate(ctx, val_set, logger)
            if not interrupted:
                fam.on_train_end(ctx)
            self._save(ctx, ["latest"])
            logger.info(f"{'stopped' if interrupted else 'finished'} at step {self.step} "
                        f"(epoch {self.epoch}) in {time.perf_counter() - t0:.1f}s")
        if interrupted:
            # Another rank's signal stops this one too; torchrun forwards SIGTERM to every rank.
            raise TrainingInterrupted(self.step, self.run.root if self.run else None, stop.signum or signal.SIGTERM)
        return TrainResult(self.run.root if self.run else None, self.step, self.epoch, self.best_value, last)

    def _check_finite(self, metrics: dict[str, float], ctx: TrainContext, logger: RunLogger) -> None:
        """Stop (one line, nothing saved) when this step's loss or gradients are not finite."""
        problem = step_problem(metrics, ctx, self.world_size)
        if problem is not None:
            error = self._diverged(problem, step=self.step + 1)
            logger.info(f"error: {error}", console=False)  # log.txt says why the run ended
            raise error

    def _diverged(self, what: str, step: int | None = None) -> MedgenError:
        return divergence_error(self.step if step is None else step, what, self.family.name,
                                self.run.root if self.run is not None else None, self.saved_step,
                                self.cfg.model_dump(mode="json"))

    def _stop_requested(self, stop: StopFlag) -> bool:
        if self.world_size == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        torch.distributed.all_reduce(flag)
        return bool(flag.item() > 0)
