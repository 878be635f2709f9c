"""Shape metrics against a brute-force numpy reference and analytic cases; the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medgen_cli.metrics.shapes import chamfer_distance, load_shapes, metrics_from_distances, shape_metrics


def _cd_ref(a: np.ndarray, b: np.ndarray) -> float:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return d.min(1).mean() + d.min(0).mean()


def _trio_ref(real: list[np.ndarray], fake: list[np.ndarray]) -> dict[str, float]:
    """Direct transcription of the definitions, loop by loop."""
    mmd = np.mean([min(_cd_ref(r, g) for g in fake) for r in real])
    matched = {int(np.argmin([_cd_ref(g, r) for r in real])) for g in fake}
    shapes = [(s, 0) for s in real] + [(s, 1) for s in fake]
    correct = 0
    for i, (s, label) in enumerate(shapes):
        dists = [(_cd_ref(s, t), lt) for j, (t, lt) in enumerate(shapes) if j != i]
        best = min(d for d, _ in dists)
        # ties go to the other set (the convention of metrics_from_distances)
        correct += all(lt == label for d, lt in dists if d == best)
    return {"mmd_cd": mmd, "cov_cd": len(matched) / len(real), "1nna_cd": correct / len(shapes)}


def _clouds(n: int, seed: int, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(20, 40)), 3)) * rng.uniform(0.5, 2) + shift for _ in range(n)]


def test_chamfer_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(57, 3)), rng.normal(size=(31, 3)) + 0.3
    assert chamfer_distance(a, b) == pytest.approx(_cd_ref(a, b), rel=1e-10)
    assert chamfer_distance(a, b, chunk=7) == pytest.approx(_cd_ref(a, b), rel=1e-10)
    assert chamfer_distance(a, a) == 0.0
    # analytic: two single points at distance 2 → 4 + 4
    assert chamfer_distance(np.zeros((1, 3)), np.array([[2.0, 0, 0]])) == pytest.approx(8.0)


def test_trio_matches_reference() -> None:
    real, fake = _clouds(6, 1), _clouds(5, 2, shift=0.2)
    got = shape_metrics(real, fake)
    ref = _trio_ref(real, fake)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-9), k
    assert got["num_real"] == 6 and got["num_fake"] == 5


def test_identical_sets() -> None:
    real = _clouds(5, 3)
    got = shape_metrics(real, [s.copy() for s in real])
    assert got["mmd_cd"] == 0.0
    assert got["cov_cd"] == 1.0
    assert got["1nna_cd"] == 0.0  # every shape's nearest other is its exact copy in the other set


def test_separated_sets_are_told_apart() -> None:
    real, fake = _clouds(5, 4), _clouds(5, 5, shift=100.0)
    got = shape_metrics(real, fake)
    assert got["1nna_cd"] == 1.0
    assert got["mmd_cd"] > 3 * 100.0**2 * 1.9


def test_coverage_counts_distinct_matches() -> None:
    d_rg = np.array([[0.1, 0.2, 9.0], [5.0, 6.0, 9.0], [7.0, 8.0, 0.5]])
    out = metrics_from_distances(d_rg, np.full((3, 3), 3.0), np.full((3, 3), 3.0))
    assert out["cov_cd"] == pytest.approx(2 / 3)  # fakes 0, 1 → real 0; fake 2 → real 2
    assert out["mmd_cd"] == pytest.approx((0.1 + 5.0 + 0.5) / 3)


def test_cli_on_volumes_and_points(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medgen_cli.cli.app import app
    from medgen_cli.data.points import save_points
    from medgen_cli.io import save_nifti

    rng = np.random.default_rng(0)
    (tmp_path / "real").mkdir()
    vols = []
    for i in range(3):
        vol = (rng.random((8, 8, 8)) > 0.8).astype(np.float32)
        vols.append(vol)
        save_nifti(vol, tmp_path / "real" / f"v{i}.nii.gz", affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    for i, vol in enumerate(vols):  # the same shapes as point files, in world coordinates
        save_points(np.argwhere(vol > 0.5) * 2.0, tmp_path / "fake" / f"p{i}.ply")
    res = CliRunner().invoke(app, ["eval", "shapes", str(tmp_path / "real"), str(tmp_path / "fake"),
                                   "--json", "--num-points", "0"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["mmd_cd"] == pytest.approx(0.0, abs=1e-9) and out["cov_cd"] == 1.0
    assert len(load_shapes(tmp_path / "real", num_points=5)[0]) == 5
