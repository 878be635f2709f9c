"""The ``medgen demo`` pipeline as a library call: synthetic H5 point clouds → ``convert-h5`` NIfTI
volumes → a small autoencoder → a small class-conditional latent rectified-flow model → samples
(NIfTI) → slice grids → how good they are (a classifier trained on the real volumes names each
sample's class; 2.5D FID next to the real-vs-real floor)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from medgen_cli.errors import MedgenError

MARKER = ".medgen-demo"


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MedgenError(f"{out} already exists and is not empty", "pass --overwrite to replace it, or --out DIR")
        if not (out / MARKER).is_file():
            # Only ever delete a folder an earlier demo made.
            raise MedgenError(f"{out} was not made by `medgen demo`; refusing to delete it", "choose another --out DIR")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by medgen demo\n")


def _ae_overrides(size: int, steps: int, device: str) -> list[str]:
    # Small enough for ~0.3 s/step on one CPU core at 16^3 (batch 4).
    ch, groups = ("[8, 16]", 4) if size <= 16 else ("[16, 32]", 8)
    return [f"data.size=[{size}, {size}, {size}]", "data.cache_rate=1.0", "data.intensity=none",
            f"model.channels={ch}", f"model.norm_num_groups={groups}",
            "model.attention_levels=[false, false]", "model.with_nonlocal_attn=false",
            "model.disc_channels=8", "model.disc_layers=2", f"loss.adv_start_step={steps // 2}",
            "optimizer.lr_g=0.002", "optimizer.lr_d=0.0005", f"trainer.max_steps={steps}", "trainer.batch_size=4",
            f"trainer.device={device}", "trainer.ema.decay=0.95", f"trainer.val_every={max(steps // 2, 1)}",
            f"trainer.ckpt_every={steps}", f"trainer.image_every={steps}", "trainer.log_every=10"]


def _diffusion_overrides(ae_run: Path, steps: int, sample_steps: int, device: str, batch: int) -> list[str]:
    # Rectified flow: at 400 steps a DDPM-objective twin's samples were still noise-like (40 % class
    # accuracy with DDIM-50) while RFlow-30's were recognisable. Guidance 5 instead of 3: class
    # accuracy 100 % / 93 % on two seeds vs 87 % / 93 % (benchmarks/bench_ddim_vs_ddpm.py --quality).
    return [f"autoencoder_run={ae_run}", "data.cache_rate=1.0", "unet.channels=[16, 32]", "unet.norm_num_groups=8",
            "unet.attention_levels=[false, true]", "unet.num_head_channels=[0, 16]", "conditioning.enabled=true",
            "noise.objective=rflow", "conditioning.guidance_scale=5", "optimizer.lr=0.001",
            f"trainer.max_steps={steps}", f"trainer.batch_size={batch}", f"trainer.device={device}",
            "trainer.ema.decay=0.95", f"trainer.val_every={max(steps // 2, 1)}", f"trainer.ckpt_every={steps}",
            f"trainer.image_every={steps}", "trainer.log_every=10", f"sample.steps={sample_steps}"]


def run_demo(out: Path, overwrite: bool = False, num_volumes: int = 48, size: int = 16, ae_steps: int = 300,
             diffusion_steps: int = 400, num_samples: int = 15, sample_steps: int = 30, fid: bool = True,
             device: str = "auto", say: Callable[[str], object] = print) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Run the whole pipeline into ``out`` (a folder an earlier demo made is replaced with
    ``overwrite``; any other non-empty folder is refused).

    Returns:
        Rows ``(stage, where, a command to try next)`` and the sample-quality lines.
    """
    if size % 4:
        raise MedgenError(f"--size must be a multiple of 4, not {size}")
    _prepare_out(out, overwrite)
    return _pipeline(out, num_volumes, size, ae_steps, diffusion_steps, num_samples, sample_steps, fid, device, say)


def _pipeline(out: Path, num_volumes: int, size: int, ae_steps: int, diffusion_steps: int, num_samples: int,
              sample_steps: int, fid: bool, device: str,
              say: Callable[[str], object]) -> tuple[list[tuple[str, str, str]], list[str]]:
    from medgen_cli.data.convert import ConvertOptions, run_convert
    from medgen_cli.data.synth import write_synth_h5
    from medgen_cli.engine.inference import infer_to_dir
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.io import load_nifti
    from medgen_cli.viz.slices import save_slice_grid

    say("1/6 synthetic point clouds")
    h5 = write_synth_h5(out / "synth.h5", n=num_volumes, n_points=4096, seed=0)
    say("2/6 convert-h5 → NIfTI volumes")
    volumes = out / "volumes"
    run_convert(ConvertOptions(inputs=[str(h5)], out=str(volumes), resolution=(size, size, size), method="gaussian",
                               sigma=1.0, val_fraction=0.2, workers=1), progress=True)
    real = sorted((volumes / "train").glob("*.nii.gz"))[:4]
    real_png = save_slice_grid([load_nifti(p)[0] for p in real], out / "data_grid.png", titles=[p.name for p in real])
    say("3/6 autoencoder")
    runs = out / "runs"
    base = [f"output_dir={runs}", f"data.root={volumes}"]
    ae_run = train_from_config(build_config("autoencoder", overrides=[*base, "name=ae", *_ae_overrides(size, ae_steps, device)]))
    say("4/6 latent rectified flow (class-conditional)")
    df_run = train_from_config(build_config("diffusion", overrides=[
        f"output_dir={runs}", "name=diffusion", *_diffusion_overrides(ae_run, diffusion_steps, sample_steps, device, min(8, num_volumes // 2))]))
    say("5/6 samples")
    samples = out / "samples"
    result = infer_to_dir(df_run, "sample", {"num": num_samples, "seed": 0, "batch_size": 4, "format": "nifti",
                                             "scheduler": "rflow", "steps": sample_steps}, samples, device=device)
    vols = list(result.samples.volumes)
    grid = save_slice_grid(vols, out / "samples_grid.png", titles=[f"class {lab}" for lab in result.samples.labels])
    say("6/6 sample quality")
    quality = _quality(volumes, vols, list(result.samples.labels), fid, device)
    return [
        ("synthetic H5", str(h5), "medgen data convert-h5 --help"),
        ("NIfTI volumes", f"{volumes}/{{train,val}} + manifest.json ({real_png.name})",
         f"medgen viz slices {volumes}/train --out {out}/train_grid.png --mip"),
        ("autoencoder run", str(ae_run), f"medgen sample {ae_run} --input {real[0]}"),
        ("diffusion run", str(df_run), f"medgen train diffusion --resume {df_run} --set trainer.max_steps=N"),
        ("samples", f"{samples} ({len(vols)} NIfTI)", f"medgen sample {df_run} --scheduler rflow --steps 30"),
        ("slice grid", str(grid), f"medgen interpolate {df_run} --seed-a 0 --seed-b 1"),
        ("TensorBoard", f"{runs}/*/*/tb", f"tensorboard --logdir {runs}"),
    ], quality


def _real_volumes(root: Path, split: str, size: int) -> tuple[list, list[int]]:
    """The real volumes of a split as the models saw them, with their manifest labels."""
    from medgen_cli.data.datasets import make_dataset
    from medgen_cli.data.image_config import ImageDataConfig

    cfg = ImageDataConfig(root=str(root), size=[size] * 3, intensity="none", flip=False, cache_rate=0.0, use_labels=True)
    ds = make_dataset(cfg, split)
    items = [ds[i] for i in range(len(ds))] if ds is not None else []
    return [it["image"][0].numpy() for it in items], [int(it["label"]) for it in items]


def _quality(volumes: Path, samples: list, labels: list, fid: bool, device: str) -> list[str]:
    """Summary lines: class accuracy of the samples (and of held-out real volumes, the check that
    the classifier works), then 2.5D FID vs the held-out volumes next to the real-vs-real floor."""
    from medgen_cli.metrics.sample_quality import fid_with_floor, sample_class_accuracy

    size = samples[0].shape[0]
    train, train_labels = _real_volumes(volumes, "train", size)
    val, val_labels = _real_volumes(volumes, "val", size)
    acc = sample_class_accuracy(train, train_labels, samples, labels, val, val_labels)
    lines = [f"class accuracy: {acc['sample_accuracy']:.0%} of {len(samples)} samples recognised as their class "
             f"by a classifier trained on the real volumes (held-out real volumes: {acc.get('real_accuracy', float('nan')):.0%})"]
    if not fid:
        return lines
    try:
        # the central eighth of the slices per axis (2 at 16³) keeps Inception on CPU to about a minute
        f = fid_with_floor(train, val, samples, center_fraction=0.125, device="cpu" if device == "auto" else device)
    except MedgenError as exc:
        return [*lines, f"2.5D FID: not computed ({exc})"]
    return [*lines, f"2.5D FID vs held-out volumes: {f['fid']:.1f} (real-vs-real floor with as many volumes: "
                    f"{f['fid_floor']:.1f})"]
