"""What `medgen recon` and `sample` tell the user (issue 29, items 8 and 12): the checkpoint used,
a note naming the geometry and grid before the work starts, progress on every reconstruction,
one answer for reconstructing with an autoencoder run, and help without `<bool>` or broken lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(cli_streams):  # noqa: ANN001, ANN201
    """``medgen ARGS``: (exit code, stdout, stderr) (tests/conftest.py)."""
    return cli_streams


def _ct(path: Path, n: int = 12) -> Path:
    """A cube of soft tissue in air, in HU, 4 mm voxels."""
    from medgen_cli.io import save_nifti

    vol = np.full((n, n, n), -1000.0, np.float32)
    vol[n // 4: 3 * n // 4, n // 4: 3 * n // 4, n // 4: 3 * n // 4] = 40.0
    return save_nifti(vol, path, affine=np.diag([4.0, 4.0, 4.0, 1.0]))


def _geometry(path: Path) -> Path:
    path.write_text("dso: 800.0\ndsd: 1200.0\nvolume_size: 16\nvoxel_spacing: 25.6\ndetector_size: 16\n"
                    "detector_spacing: 38.4\nnum_angles: 50\nangle_range: 180.0\n")
    return path


class _Stop(Exception):
    pass


def test_recon_names_the_default_geometry_and_grid_before_the_work(tmp_path: Path) -> None:
    from medgen_cli.engine.recon import reconstruct

    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        raise _Stop   # the note must come before the (at 256³, minutes-long) simulation and FDK

    with pytest.raises(_Stop):
        reconstruct(None, _ct(tmp_path / "ct.nii.gz"), "fdk", say=say)
    assert said[0].startswith("note: fdk: 10 views on the default LUNA16 geometry")
    assert "256³ grid at 1.6 mm" in said[0] and "--geometry" in said[0]


def test_recon_shows_progress_and_simulates_the_same_views(tmp_path: Path) -> None:
    from medgen_cli.data import cbct
    from medgen_cli.data.cbct.geometry import load_geometry
    from medgen_cli.engine.recon import reconstruct
    from medgen_cli.recon.inputs import nifti_case

    bars: list[tuple[str, int, int]] = []

    def track(it: Iterable[Any], total: int, description: str) -> Iterable[Any]:
        items = list(it)
        bars.append((description, total, len(items)))
        return items

    geo_file, ct = _geometry(tmp_path / "g.yaml"), _ct(tmp_path / "ct.nii.gz")
    said: list[str] = []
    reconstruct(None, ct, "sirt", views=6, geometry=geo_file, iterations=2, say=said.append, track=track)
    assert said == [f"note: sirt: 6 views on the geometry of {geo_file}: 16³ grid at 25.6 mm, 16² detector at 38.4 mm"]
    assert bars == [("simulating 6 views", 6, 6), ("SIRT, 2 iterations, on the 16³ grid", 1, 1)]
    # Simulated one view at a time for the progress: the same projections as all at once.
    geo = load_geometry(str(geo_file))
    case = nifti_case(ct, geo, 6, track)[0]
    np.testing.assert_allclose(case.projections, cbct.simulate(case.volume, geo, case.angles), rtol=1e-6, atol=1e-6)


def test_recon_cli_prints_the_note(tmp_path: Path, cli: Any) -> None:
    code, out, err = cli("recon", "--method", "fdk", "--input", _ct(tmp_path / "ct.nii.gz"), "--geometry",
                         _geometry(tmp_path / "g.yaml"), "--views", "6", "--out", tmp_path / "r.nii.gz")
    assert code == 0, err
    assert out == "" and err.splitlines()[0].startswith("note: fdk: 6 views on the geometry of")
    assert "wrote" in err and "(fdk, 6 views," in err and (tmp_path / "r.nii.gz").is_file()


# ---- autoencoder runs: one answer (`sample --input`), and the checkpoint named ------------------
@pytest.fixture(scope="module")
def ae_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from medgen_cli.config.build import build_config
    from medgen_cli.engine.launch import train_from_config
    from medgen_cli.io import save_nifti

    root = tmp_path_factory.mktemp("ae")
    grid = np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1)
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            save_nifti((np.linalg.norm(grid - 8.0, axis=-1) < 3 + 2 * i).astype(np.float32),
                       root / "vol" / split / f"v{i}.nii.gz")
    cfg = build_config("autoencoder", REPO / "configs" / "tiny" / "autoencoder.yaml",
                       ["trainer.max_steps=1", "trainer.val_every=1", "trainer.ckpt_every=1",
                        "trainer.image_every=100", f"data.root={root / 'vol'}", f"output_dir={root / 'runs'}", "name=ae"])
    run = train_from_config(cfg)
    assert run is not None
    return run, root / "vol" / "val" / "v0.nii.gz"


def test_sampling_an_autoencoder_run_points_to_sample_input(ae_run: tuple[Path, Path], tmp_path: Path, cli: Any) -> None:
    run, volume = ae_run
    code, _, err = cli("sample", run, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 2 and "medgen sample RUN --input FILE" in err and "medgen recon" not in err, err
    code, _, err = cli("sample", run, "--input", volume, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 0 and "used checkpoints/best.pt (step 1)" in err, err
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())[0]["input"] == str(volume)


def test_recon_on_an_autoencoder_run_names_the_checkpoint(ae_run: tuple[Path, Path], tmp_path: Path, cli: Any) -> None:
    run, volume = ae_run
    code, _, err = cli("recon", run, "--input", volume, "--out", tmp_path / "r.nii.gz", "--device", "cpu")
    assert code == 0, err
    assert "used checkpoints/best.pt (step 1)" in err and "?" not in err, err
    assert (tmp_path / "r.nii.gz").is_file()


# ---- help -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["demo"], ["train", "toy"], ["sample"], ["eval", "fid"]])
def test_help_shows_no_bool_type_for_flags(command: list[str], subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "COLUMNS": "200"}
    r = subprocess.run([sys.executable, "-m", "medgen_cli", *command, "--help"], cwd=REPO, env=env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0 and ("--overwrite" in r.stdout or "--dry-run" in r.stdout), r.stdout
    assert "<bool>" not in r.stdout
    assert "<int" in r.stdout or "<path>" in r.stdout   # value types are still shown


def test_demo_help_keeps_sentences_whole(subprocess_env: dict[str, str]) -> None:
    env = {**subprocess_env, "COLUMNS": "400"}
    r = subprocess.run([sys.executable, "-m", "medgen_cli", "demo", "--help"], cwd=REPO, env=env, text=True,
                       capture_output=True, timeout=120)
    lines = [line.strip(" │") for line in r.stdout.splitlines()]
    # At 400 columns a paragraph is one line: a source line break shows as a break mid-sentence.
    assert any(line.startswith("Synthetic H5 point clouds") and line.endswith("and the 2.5D FID.") for line in lines), r.stdout


# ---- dif-gaussian runs: recon and eval recon name the checkpoint ----------------------------------
def test_recon_and_eval_recon_name_the_checkpoint(trained_run: Path, cbct_data: Path, tmp_path: Path, cli: Any) -> None:
    case = sorted((cbct_data / "test").glob("*.h5"))[0]
    code, _, err = cli("recon", trained_run, "--input", case, "--out", tmp_path / "r.nii.gz", "--device", "cpu")
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0].startswith("used checkpoints/best.pt (step ") and lines[1].startswith("note: model: 10 views on the run's")
    assert "(the run's model, 10 views," in err
    code, out, err = cli("eval", "recon", trained_run, "--data", cbct_data / "test", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["checkpoint"].startswith("checkpoints/best.pt (step ")
    code, out, _ = cli("eval", "recon", "--method", "fdk", "--data", cbct_data / "test", "--json")
    assert code == 0 and json.loads(out)["checkpoint"] is None
