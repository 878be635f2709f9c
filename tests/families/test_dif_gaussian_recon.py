"""``medgen recon`` is a caller of the dif-gaussian ``recon`` contract: typed options, refusals
of options the method cannot use, the same reconstruction through the Python API."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medgen_cli.cli.app import main


def _medgen(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.err + cap.out


def _case(cbct_data: Path) -> Path:
    return sorted((cbct_data / "test").glob("*.h5"))[0]


def test_recon_cli_equals_the_api_and_reports_metrics(trained_run: Path, cbct_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from medgen_cli.api import load_run
    from medgen_cli.data import cbct
    from medgen_cli.metrics.recon import psnr

    out = tmp_path / "r.nii.gz"
    code, text = _medgen(capsys, "recon", trained_run, "--input", _case(cbct_data), "--out", out, "--device", "cpu")
    assert code == 0 and "PSNR" in text, text
    res = load_run(trained_run).reconstruct(_case(cbct_data), views=10)
    written = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_allclose(written, res.volumes[0], atol=1e-6)
    case = cbct.read_case(_case(cbct_data))
    # the metrics recorded with the reconstruction are the ones of the written volume (z, y, x order)
    assert res.extra[0]["psnr"] == pytest.approx(psnr(written.transpose(2, 1, 0), case.volume), abs=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--geometry", "g.yaml"], "--geometry is for --method fdk|sirt"),
    (["--iterations", "5"], "--iterations only applies to --method sirt"),
    (["--views", "7"], "trained for [10] views, not 7"),
])
def test_recon_refuses_options_the_method_cannot_use(trained_run: Path, cbct_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str], args: list[str],
                                                     words: str) -> None:
    code, text = _medgen(capsys, "recon", trained_run, "--input", _case(cbct_data), "--out", tmp_path / "r.nii.gz",
                         "--device", "cpu", *args)
    assert code == 2 and words in text and len(text.strip().splitlines()) == 1, text
    assert not (tmp_path / "r.nii.gz").exists()


def test_sampling_a_reconstruction_run_points_to_recon(trained_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _medgen(capsys, "sample", trained_run, "--out", tmp_path / "s", "--device", "cpu")
    assert code == 2 and "'dif-gaussian' runs cannot sample" in text and "medgen recon" in text, text
