"""One sampling contract for every family (medgen_cli.families.inference + engine.outputs).

Each family is trained for one step on tiny synthetic data, then driven through ``medgen sample``
/ ``interpolate`` exactly as a user would: typed options with the family's defaults, a flag it
cannot use refused with one line (exit 2), the same file layout for the same format, and a
``manifest.json`` whose entries match the files and the Python API's samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from medgen_cli.cli.app import main

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny"
SAMPLERS = ["sagan", "stylegan2", "fastgan", "sparse-gan", "diffusion", "diffusion-cond"]
#: A flag each family cannot use, and a word its one-line refusal must contain.
FOREIGN = {"sagan": (["--truncation", "0.5"], "do not take --truncation"),
           "stylegan2": (["--guidance-scale", "2"], "do not take --guidance-scale"),
           "fastgan": (["--truncation", "0.5"], "do not take --truncation"),
           "sparse-gan": (["--scheduler", "ddim"], "do not take --scheduler"),
           "diffusion": (["--guidance-scale", "2"], "needs a class-conditional run"),
           "diffusion-cond": (["--truncation", "0.5"], "do not take --truncation"),
           "autoencoder": (["--num", "3"], "do not take --num")}


def _images(root: Path, n: int = 8) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def _volumes(root: Path) -> Path:
    """Balls of two radii (labels 0 and 1) under root/{train,val} with a manifest."""
    from medgen_cli.io import save_nifti

    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    records = []
    for split, n in (("train", 4), ("val", 2)):
        for i in range(n):
            vol = (np.linalg.norm(grid - 8.0, axis=-1) < 3 + 2 * (i % 2)).astype(np.float32)
            rel = f"{split}/vol_{i:03d}.nii.gz"
            save_nifti(vol, root / rel, affine=np.diag([2.0, 2.0, 3.0, 1.0]))
            records.append({"file": rel, "split": split, "label": i % 2})
    (root / "manifest.json").write_text(json.dumps(records))
    return root


def _train(family: str, config: str, out: Path, *overrides: str) -> Path:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config

    common = ["trainer.max_steps=1", "trainer.val_every=1", "trainer.ckpt_every=1", "trainer.image_every=100",
              f"output_dir={out}"]
    run = train_from_config(build_config(family, TINY / config, [*common, *overrides]))
    assert run is not None
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("contract")
    images, volumes, out = _images(root / "img"), _volumes(root / "vol"), root / "runs"
    ae = _train("autoencoder", "autoencoder.yaml", out, f"data.root={volumes}", "name=ae")
    return {
        "sagan": _train("sagan", "sagan.yaml", out, f"data.root={images}"),
        "stylegan2": _train("stylegan2", "stylegan2.yaml", out, f"data.root={images}"),
        "fastgan": _train("fastgan", "fastgan.yaml", out, f"data.root={images}"),
        "sparse-gan": _train("sparse-gan", "sparse_gan.yaml", out, f"data.root={volumes}", "sparse.backend=torch"),
        "autoencoder": ae,
        "diffusion": _train("diffusion", "diffusion.yaml", out, f"autoencoder_run={ae}", "name=uncond"),
        "diffusion-cond": _train("diffusion", "diffusion.yaml", out, f"autoencoder_run={ae}", "name=cond",
                                 "conditioning.enabled=true"),
        "volume": volumes / "val" / "vol_000.nii.gz",
    }


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """``medgen ARGS`` through the console entry point: (exit code, stderr + stdout)."""
    def run(*args: object) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exc:
            main([str(a) for a in args])
        cap = capsys.readouterr()
        return int(exc.value.code or 0), cap.err + cap.out
    return run


def _quick(name: str) -> list[str]:
    return ["--steps", "2"] if name.startswith("diffusion") else []


@pytest.mark.parametrize("name", SAMPLERS)
def test_typed_options_with_family_defaults(runs: dict[str, Path], name: str) -> None:
    from medgen_cli.engine.run_loading import load_run
    from medgen_cli.contract.options import InterpolateOptions, SampleOptions, parse_options

    from medgen_cli.contract.capabilities import Interpolating, Sampling

    fam = load_run(runs[name], device="cpu").family
    assert isinstance(fam, Sampling) and isinstance(fam, Interpolating)
    assert issubclass(fam.sample_options, SampleOptions) and issubclass(fam.interpolate_options, InterpolateOptions)
    opts = parse_options(fam.sample_options, {}, fam, "sample")
    assert (opts.num, opts.seed) == (8, 0)
    assert opts.format == (("png",) if name in ("sagan", "stylegan2", "fastgan") else ("nifti",))


@pytest.mark.parametrize("name", [*SAMPLERS, "autoencoder"])
def test_a_flag_the_family_cannot_use_is_one_line_exit_2(runs: dict[str, Path], name: str, tmp_path: Path, cli: Any) -> None:
    flag, words = FOREIGN[name]
    extra = ["--input", str(runs["volume"])] if name == "autoencoder" else []
    code, out = cli("sample", runs[name], *extra, *flag, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 2, out
    assert words in out and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert not (tmp_path / "s").exists()  # refused before anything was generated or written


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_files_for_the_same_format(runs: dict[str, Path], name: str, tmp_path: Path, cli: Any) -> None:
    from medgen_cli.api import load_run

    out = tmp_path / "s"
    code, text = cli("sample", runs[name], "--num", "3", "--seed", "5", "--format", "npy", "--out", out,
                     "--device", "cpu", *_quick(name))
    assert code == 0, text
    files = ["sample_00005.npy", "sample_00006.npy", "sample_00007.npy"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*files, "manifest.json", "preview"])
    assert [p.name for p in (out / "preview").iterdir()] == ["grid.png"]
    # A conditional sample's class is its seed's, (seed + i) mod 2 classes: sample 5 is class 1 in any request.
    labels = [1, 0, 1] if name == "diffusion-cond" else [None] * 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == [{"file": f, "seed": 5 + i, "label": labels[i]} for i, f in enumerate(files)]
    # The files hold the API's samples; sample i depends on seed 5 + i only.
    api = load_run(runs[name])
    opts = {"steps": 2} if name.startswith("diffusion") else {}
    ref = api.sample(3, seed=5, **opts)
    assert ref.seeds == [5, 6, 7] and ref.labels == labels
    for i, f in enumerate(files):
        np.testing.assert_allclose(np.load(out / f), ref.volumes[i], atol=1e-5)
    # the API writes the same files as the command
    assert [p.name for p in api.write(ref, tmp_path / "w", "npy")] == files
    assert json.loads((tmp_path / "w" / "manifest.json").read_text()) == manifest
    one = api.sample(1, seed=6, batch_size=1, **opts)
    np.testing.assert_allclose(one.volumes[0], ref.volumes[1], atol=1e-5)


@pytest.mark.parametrize("name", SAMPLERS)
def test_interpolate_writes_frames_manifest_and_strip(runs: dict[str, Path], name: str, tmp_path: Path, cli: Any) -> None:
    out = tmp_path / "i"
    steps = ["--sample-steps", "2"] if name.startswith("diffusion") else []
    code, text = cli("interpolate", runs[name], "--frames", "3", "--out", out, "--device", "cpu", *steps)
    assert code == 0, text
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["file"].split(".")[0] for m in manifest] == ["frame_000", "frame_001", "frame_002"]
    assert [m["t"] for m in manifest] == [0.0, 0.5, 1.0]
    assert all((out / m["file"]).is_file() for m in manifest)
    assert (out / "preview" / "strip.png").is_file()


def test_interpolate_steps_is_the_old_name_of_frames(runs: dict[str, Path], tmp_path: Path, cli: Any) -> None:
    """``interpolate --steps N`` (frames before --steps meant sampler steps everywhere) still
    gives N frames, with a one-line note; giving both names is one error line."""
    code, text = cli("interpolate", runs["sagan"], "--steps", "3", "--out", tmp_path / "old", "--device", "cpu")
    assert code == 0, text
    notes = [line for line in text.splitlines() if "renamed" in line]
    assert notes == ["note: interpolate --steps is renamed --frames; the old name still works for now"], text
    assert len(json.loads((tmp_path / "old" / "manifest.json").read_text())) == 3
    code, text = cli("interpolate", runs["sagan"], "--frames", "3", "--out", tmp_path / "new", "--device", "cpu")
    assert code == 0 and "renamed" not in text, text
    code, text = cli("interpolate", runs["sagan"], "--steps", "3", "--frames", "4", "--out", tmp_path / "both",
                     "--device", "cpu")
    assert code == 2 and "--steps is the old name of --frames" in text and len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "both").exists()


def test_api_interpolate_takes_frames_and_warns_on_steps(runs: dict[str, Path]) -> None:
    import warnings

    from medgen_cli.api import load_run
    from medgen_cli.errors import MedgenError

    run = load_run(runs["sagan"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # frames=: no warning
        new = run.interpolate(0, 1, frames=3)
    with pytest.warns(FutureWarning, match=r"Run.interpolate\(steps=...\) is renamed frames="):
        old = run.interpolate(0, 1, steps=3)
    assert len(new.arrays) == len(old.arrays) == 3
    np.testing.assert_allclose(old.arrays, new.arrays, atol=1e-6)
    assert len(run.interpolate(0, 1).arrays) == 8  # the default
    with pytest.raises(MedgenError, match="old name of --frames"):
        run.interpolate(0, 1, frames=3, steps=3)


def test_several_formats_get_a_folder_each_and_overwrite_drops_stale_files(runs: dict[str, Path], cli: Any,
                                                                           tmp_path: Path) -> None:
    from medgen_cli.data.points import load_points

    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["sparse-gan"], run)
    (run / "checkpoints" / "best.pt").unlink(missing_ok=True)
    out = tmp_path / "s"
    code, text = cli("sample", run, "--num", "2", "--format", "nifti,points", "--threshold", "0",
                     "--out", out, "--device", "cpu")
    assert code == 0, text
    assert "latest.pt" in text  # a run without best.pt: the checkpoint used is named
    assert sorted(p.name for p in out.iterdir()) == ["nifti", "points", "preview"]
    assert sorted(p.name for p in (out / "points").iterdir()) == ["manifest.json", "sample_00000.ply", "sample_00001.ply"]
    assert len(load_points(out / "points" / "sample_00000.ply")) > 0
    code, text = cli("sample", runs["sparse-gan"], "--num", "2", "--format", "nifti,points", "--out", out)
    assert code == 2 and "already holds samples" in text  # nothing replaced silently
    code, text = cli("sample", runs["sparse-gan"], "--num", "1", "--seed", "4", "--format", "nifti", "--out",
                     out / "nifti", "--overwrite", "--device", "cpu")
    assert code == 0, text
    assert sorted(p.name for p in (out / "nifti").iterdir()) == ["manifest.json", "preview", "sample_00004.nii.gz"]


def test_threshold_without_points_and_unknown_format_are_refused(runs: dict[str, Path], tmp_path: Path, cli: Any) -> None:
    code, text = cli("sample", runs["sparse-gan"], "--threshold", "0.2", "--out", tmp_path / "a")
    assert code == 2 and "--threshold only applies to --format points" in text
    code, text = cli("sample", runs["sagan"], "--format", "nifti", "--out", tmp_path / "b")
    assert code == 2 and "use one of png, npy" in text


def test_autoencoder_reconstructs_input_with_the_same_layout(runs: dict[str, Path], tmp_path: Path, cli: Any) -> None:
    from medgen_cli.api import load_run

    out = tmp_path / "r"
    code, text = cli("sample", runs["autoencoder"], "--input", runs["volume"], "--format", "npy", "--out", out,
                     "--device", "cpu")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "preview", "recon_vol_000.npy"]
    assert [p.name for p in (out / "preview").iterdir()] == ["compare.png"]
    entry = json.loads((out / "manifest.json").read_text())[0]
    assert entry["file"] == "recon_vol_000.npy" and entry["seed"] is None and entry["input"] == str(runs["volume"])
    np.testing.assert_allclose(np.load(out / entry["file"]),
                               load_run(runs["autoencoder"]).reconstruct(runs["volume"]).volumes[0], atol=1e-5)
    code, text = cli("sample", runs["autoencoder"], "--out", tmp_path / "none")
    assert code == 2 and "cannot sample" in text


def test_eval_counts_exactly_the_samples_and_validates_both_inputs_first(runs: dict[str, Path], tmp_path: Path,
                                                                         cli: Any) -> None:
    from PIL import Image
    from pytorch_fid.fid_score import IMAGE_EXTENSIONS

    out = tmp_path / "s"
    assert cli("sample", runs["sagan"], "--num", "3", "--out", out, "--device", "cpu")[0] == 0
    # pytorch-fid's own file rule (its extensions, not recursive) finds exactly the 3 samples
    assert len([f for ext in IMAGE_EXTENSIONS for f in out.glob(f"*.{ext}")]) == 3
    real = runs["sagan"].parents[2] / "img"
    # a stray image in a sample folder is refused before any feature is computed (no weights needed)
    Image.new("L", (16, 16)).save(out / "stray.png")
    code, text = cli("eval", "fid", real, out, "--weights", tmp_path / "missing.pth")
    assert code == 2 and "holds 4 images but its manifest.json lists 3 samples" in text, text
    code, text = cli("eval", "fid", real, runs["volume"].parent, "--weights", tmp_path / "missing.pth")
    assert code == 2 and "REAL holds images but FAKE holds volumes" in text, text
    # eval shapes: a folder mixing volumes and point files would count each shape twice
    mixed = tmp_path / "mixed"
    assert cli("sample", runs["sparse-gan"], "--num", "2", "--format", "nifti,points", "--threshold", "0",
               "--out", mixed, "--device", "cpu")[0] == 0
    for f in (mixed / "points").glob("*.ply"):
        (mixed / "nifti" / f.name).write_bytes(f.read_bytes())
    code, text = cli("eval", "shapes", runs["volume"].parent, mixed / "nifti")
    assert code == 2 and "holds both NIfTI volumes (2) and point files (2)" in text, text


def test_every_builtin_family_that_samples_is_driven_here() -> None:
    """The sampling list above covers every registered built-in family with sampling options,
    so a new family that samples fails here until it is added (with a flag it must refuse)."""
    from medgen_cli.contract.capabilities import Sampling
    from medgen_cli.contract.registry import all_specs

    covered = {s.removesuffix("-cond") for s in SAMPLERS}
    samplers = [name for name, spec in all_specs().items()
                if spec.family.startswith("medgen_cli.families.") and issubclass(spec.family_class(), Sampling)]
    assert sorted(set(samplers) - covered) == []
    assert sorted(covered - set(FOREIGN)) == []
