"""Report run for the 2D GAN families on real small images (run by hand, not in CI).

Cuts 64×64 patches from scikit-image's ``coins`` and ``hubble_deep_field`` (grayscale) into a
folder — about 280 images, the size of the user's particle set — trains ``sagan`` and
``stylegan2`` briefly on CPU with reduced widths, plots the loss curves, writes a sample grid and
an interpolation per family, and prints FID/KID when Inception weights are available.

    OMP_NUM_THREADS=1 python scripts/report_gan2d.py --out runs/report_gan2d --steps 120
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# Reduced widths for CPU, and a short EMA: with the default (half-life ~700 steps) the EMA
# generator of a 120-step run would still be mostly its initial weights.
FAMILY_OVERRIDES = {
    "sagan": ["model.base_channels=16", "model.max_channels=128", "model.latent_dim=64",
              "trainer.optim.step_size=100000", "trainer.ema.decay=0.95"],
    "stylegan2": ["model.channel_base=2048", "model.channel_max=128", "model.z_dim=128", "model.w_dim=128",
                  "model.ema_halflife_images=100"],
}


def cut_patches(out: Path, size: int = 64) -> int:
    """Write grayscale ``size``² patches of coins (stride size/2) and hubble (stride size) to ``out``."""
    from PIL import Image
    from skimage import color, data

    out.mkdir(parents=True, exist_ok=True)
    sources = {"coins": (data.coins().astype(np.float32) / 255.0, size // 2),
               "hubble": (color.rgb2gray(data.hubble_deep_field()).astype(np.float32), size)}
    n = 0
    for name, (img, stride) in sources.items():
        for y in range(0, img.shape[0] - size + 1, stride):
            for x in range(0, img.shape[1] - size + 1, stride):
                patch = (np.clip(img[y:y + size, x:x + size], 0, 1) * 255 + 0.5).astype(np.uint8)
                Image.fromarray(patch, mode="L").save(out / f"{name}_{y:03d}_{x:03d}.png")
                n += 1
    return n


def plot_curves(run: Path, out_png: Path) -> Path:
    """Loss terms, D outputs and augmentation p from ``metrics.jsonl`` in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss/d" in r]
    steps = [r["step"] for r in train]
    panels = {"losses": ["train/loss/d", "train/loss/g", "train/loss/r1", "train/loss/pl"],
              "D outputs": ["train/d/real", "train/d/fake"],
              "grad norms, ADA p": ["train/grad_norm/d", "train/grad_norm/g", "train/aug/p"]}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, (title, keys) in zip(axes, panels.items()):
        for key in keys:
            if any(key in r for r in train):
                ax.plot(steps, [r.get(key, np.nan) for r in train], label=key.split("/", 1)[1])
        ax.set_title(f"{run.parent.name}: {title}")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def run_family(family: str, data: Path, out: Path, steps: int, batch: int, augment: str) -> dict:
    from medgen_cli.engine.inference import infer_to_dir
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.engine.run_loading import load_run

    overrides = [f"data.root={data}", "data.resolution=64", f"trainer.max_steps={steps}", f"trainer.batch_size={batch}",
                 "trainer.log_every=5", f"trainer.val_every={max(steps // 3, 1)}", f"trainer.ckpt_every={steps}",
                 f"trainer.image_every={steps}", f"augment.mode={augment}", "fid.num_fake=500",
                 f"fid.schedule=[[{steps}, {max(steps // 3, 1)}]]", f"output_dir={out}", "name=report",
                 *FAMILY_OVERRIDES[family]]
    if augment == "ada":
        overrides.append("augment.ada_speed_images=2000")  # so p can move within a short run
    t0 = time.perf_counter()
    run = train_from_config(build_config(family, overrides=overrides))
    seconds = time.perf_counter() - t0
    extra = {"truncation": 0.8} if family == "stylegan2" else {}
    infer_to_dir(run, "sample", {"num": 16, "seed": 0, **extra}, run / "samples" / "report", device="cpu",
                 overwrite=True)
    infer_to_dir(run, "interpolate", {"seed_a": 0, "seed_b": 1, "steps": 8, **extra}, run / "samples" / "report-interp",
                 device="cpu", overwrite=True)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if "train/loss/d" in r][-1]
    fid = [r for r in rows if "val/fid" in r]
    return {
        "run": str(run), "train_seconds": round(seconds, 1), "steps": steps,
        "last": {k.split("/", 1)[1]: round(v, 4) for k, v in last.items() if k.startswith("train/")},
        "fid": [{"step": r["step"], "fid": r["val/fid"], "kid": r.get("val/kid")} for r in fid] or "not available",
        "loss_curves": str(plot_curves(run, run / "loss_curves.png")),
        "sample_grid": str(run / "samples" / "report" / "grid.png"),
        "interpolation": str(run / "samples" / "report-interp" / "strip.png"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/report_gan2d"))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--families", default="sagan,stylegan2")
    args = parser.parse_args()
    data = args.out / "patches"
    print(f"{cut_patches(data)} patches in {data}")
    report_path = args.out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    for family in args.families.split(","):
        augment = "diffaugment" if family == "sagan" else "ada"
        report[family] = run_family(family, data, args.out, args.steps, args.batch, augment)
        print(json.dumps({family: report[family]}, indent=2))
        report_path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
