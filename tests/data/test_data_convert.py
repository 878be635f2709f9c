"""convert-h5: layouts, voxels vs an independent reference, split, resume/overwrite, bad input."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from medgen_cli.data.convert import ConvertOptions, run_convert
from medgen_cli.errors import MedgenError

R = 12


def _clouds(n=6, p=80, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(p, 3)) * rng.uniform(1, 5, 3) + rng.uniform(-10, 10, 3) for _ in range(n)]


def _fixed(path, clouds, labels=None, key="data"):
    with h5py.File(path, "w") as f:
        f[key] = np.stack(clouds).astype(np.float32)
        if labels is not None:
            f["label"] = np.asarray(labels)
    return path


def _opts(inputs, out, **kw):
    kw.setdefault("resolution", (R, R, R))
    return ConvertOptions(inputs=[str(p) for p in inputs], out=str(out), **kw)


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _reference_occupancy(points, rec, res):
    """Independent voxelization: normalise with the documented sample fit, then np.histogramdd."""
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    size = np.max((hi - lo) / (np.array(res) * (1 - 2 * 0.05)))
    origin = (lo + hi) / 2 - np.array(res) * size / 2
    np.testing.assert_allclose(rec["normalization"]["origin"], origin)
    h, _ = np.histogramdd((pts - origin) / size, bins=res, range=[(0, r) for r in res])
    return (h > 0).astype(np.float32), size, origin


def test_fixed_layout_voxels_match_histogramdd_and_affine(tmp_path):
    clouds = _clouds()
    src = _fixed(tmp_path / "a.h5", [c.astype(np.float32) for c in clouds], labels=[0, 1, 2, 0, 1, 2])
    summary = run_convert(_opts([src], tmp_path / "out", val_fraction=0.34))
    out = tmp_path / "out"
    recs = _manifest(out)
    assert summary.written == 6 and len(recs) == 6
    assert sorted(r["split"] for r in recs).count("val") == 2
    for r in recs:
        img = nib.load(str(out / r["file"]))
        assert img.get_data_dtype() == np.float32 and str(out / r["file"]).endswith(".nii.gz")
        pts = clouds[r["index"]].astype(np.float32)
        ref, size, origin = _reference_occupancy(pts, r, (R, R, R))
        np.testing.assert_array_equal(np.asarray(img.dataobj), ref)
        expected_affine = np.diag([size, size, size, 1.0])
        expected_affine[:3, 3] = origin + size / 2
        np.testing.assert_allclose(img.affine, expected_affine, rtol=1e-6, atol=1e-6)
        assert r["label"] == [0, 1, 2, 0, 1, 2][r["index"]] and r["n_points"] == 80 and r["source"] == str(src)
        np.testing.assert_allclose(r["bounds"], [pts.min(0), pts.max(0)], rtol=1e-6)
    assert not (out / ".progress.jsonl").exists()


def _ragged(n=5, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(20, 60)), 3)) for _ in range(n)]


@pytest.mark.parametrize("layout", ["groups", "root_groups", "root_datasets", "lengths", "offsets_n1", "offsets_n", "single"])
def test_ragged_layouts(tmp_path, layout):
    clouds = _ragged()
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        if layout in ("groups", "root_groups"):
            for i, c in enumerate(clouds):  # s0 .. s4 plus s10: natural order, not lexicographic
                g = f.create_group(("samples/" if layout == "groups" else "") + f"s{i if i < 4 else 10}")
                g["points"] = c
                g.attrs["label"] = i % 2
        elif layout == "root_datasets":
            for i, c in enumerate(clouds):
                f[f"cloud{i}"] = c
                f[f"cloud{i}"].attrs["label"] = i % 2
        elif layout == "single":
            f["points"] = clouds[0]
            clouds = clouds[:1]
        else:
            f["points"] = np.concatenate(clouds)
            lengths = np.array([len(c) for c in clouds])
            if layout == "lengths":
                f["lengths"] = lengths
            else:
                off = np.concatenate([[0], np.cumsum(lengths)])
                f["offsets"] = off if layout == "offsets_n1" else off[:-1]
            f["label"] = np.arange(len(clouds)) % 2
    run_convert(_opts([path], tmp_path / "o", val_fraction=0.0))
    recs = _manifest(tmp_path / "o")
    assert [r["n_points"] for r in recs] == [len(c) for c in clouds]
    for r in recs:
        ref, _, _ = _reference_occupancy(clouds[r["index"]], r, (R, R, R))
        np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "o" / r["file"])).dataobj), ref)
        assert r["label"] == (None if layout == "single" else r["index"] % 2)


def test_split_is_deterministic_and_independent_of_workers(tmp_path):
    src = _fixed(tmp_path / "a.h5", _clouds(n=20, p=30))
    run_convert(_opts([src], tmp_path / "o1", seed=7, val_fraction=0.25, chunk=3))
    run_convert(_opts([src], tmp_path / "o2", seed=7, val_fraction=0.25, workers=2, chunk=3))
    run_convert(_opts([src], tmp_path / "o3", seed=8, val_fraction=0.25))
    split = lambda o: {r["index"]: r["split"] for r in _manifest(tmp_path / o)}  # noqa: E731
    assert split("o1") == split("o2") and split("o1") != split("o3")
    assert list(split("o1").values()).count("val") == 5
    for r in _manifest(tmp_path / "o1"):  # same bytes whatever the worker count
        assert (tmp_path / "o1" / r["file"]).read_bytes() == (tmp_path / "o2" / r["file"]).read_bytes()


def test_existing_out_resume_and_overwrite(tmp_path):
    src = _fixed(tmp_path / "a.h5", _clouds(n=8, p=30))
    out = tmp_path / "o"
    run_convert(_opts([src], out))
    with pytest.raises(MedgenError, match="already exists"):
        run_convert(_opts([src], out))
    # Simulate an interrupted run: two volumes and their records missing, progress log present.
    recs = _manifest(out)
    gone = recs[:2]
    for r in gone:
        (out / r["file"]).unlink()
    (out / "manifest.json").unlink()
    (out / ".progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[2:]) + '{"cut sho')
    (out / "train" / ".x.nii.gz.123.part").write_bytes(b"half")
    keep = {r["file"]: (out / r["file"]).stat().st_mtime_ns for r in recs[2:]}
    summary = run_convert(_opts([src], out, resume=True))
    assert summary.written == 2 and summary.sources[0].resumed == 6
    assert {r["file"] for r in _manifest(out)} == {r["file"] for r in recs}
    assert all((out / f).stat().st_mtime_ns == t for f, t in keep.items())
    assert not list(out.rglob("*.part*"))
    with pytest.raises(MedgenError, match="different options.*method"):
        run_convert(_opts([src], out, resume=True, method="density"))
    with pytest.raises(MedgenError, match="exclude"):
        run_convert(_opts([src], out, resume=True, overwrite=True))
    _fixed(src, _clouds(n=9, p=30))  # the input grew: the split would change
    with pytest.raises(MedgenError, match="different options.*clouds"):
        run_convert(_opts([src], out, resume=True))
    _fixed(src, _clouds(n=8, p=30))
    summary = run_convert(_opts([src], tmp_path / "fresh", resume=True))  # --resume on a new folder: a normal run
    assert summary.written == 8
    (out / "train" / "stale.nii.gz").write_bytes(b"x")
    run_convert(_opts([src], out, overwrite=True, method="density"))
    assert not (out / "train" / "stale.nii.gz").exists() and len(_manifest(out)) == 8


def test_nan_inf_dropped_and_counted_or_strict(tmp_path):
    clouds = _clouds(n=3, p=40)
    clouds[1][:5] = np.nan
    clouds[1][5] = [np.inf, 0, 0]
    src = _fixed(tmp_path / "a.h5", clouds)
    summary = run_convert(_opts([src], tmp_path / "o", val_fraction=0))
    assert summary.sources[0].nonfinite_points == 6
    rec = {r["index"]: r for r in _manifest(tmp_path / "o")}[1]
    assert rec["n_nonfinite"] == 6 and rec["n_points"] == 34
    with pytest.raises(MedgenError, match="NaN/Inf"):
        run_convert(_opts([src], tmp_path / "strict", strict=True))
    assert not (tmp_path / "strict").exists()  # nothing partial left behind


def test_empty_and_degenerate_clouds_are_skipped_and_reported(tmp_path):
    clouds = _ragged(4)
    clouds[1] = np.zeros((0, 3))
    clouds[2] = np.tile([[1.0, 2.0, 3.0]], (10, 1))
    path = tmp_path / "r.h5"
    with h5py.File(path, "w") as f:
        f["points"] = np.concatenate(clouds)
        f["lengths"] = [len(c) for c in clouds]
    summary = run_convert(_opts([path], tmp_path / "o", val_fraction=0))
    s = summary.sources[0]
    assert (s.train, s.empty, s.degenerate) == (2, 1, 1)
    assert {k["index"]: k["reason"] for k in summary.skipped_samples} == {1: "empty", 2: "all points identical (degenerate bounds)"}
    assert sorted(r["index"] for r in _manifest(tmp_path / "o")) == [0, 3]


@pytest.mark.parametrize("content,match", [
    ("text", "not an HDF5 file"),
    ("rank", r"shape \(4,\)"),
    ("lastdim", "last dimension must be 3"),
    ("key", "key 'nope' not found.*data"),
    ("labelkey", "label key 'lbl' not found"),
])
def test_bad_inputs_fail_before_writing(tmp_path, content, match):
    path = tmp_path / "bad.h5"
    kw = {}
    if content == "text":
        path.write_text("not hdf5")
    else:
        with h5py.File(path, "w") as f:
            f["data"] = {"rank": np.zeros(4), "lastdim": np.zeros((2, 5, 2))}.get(content, np.zeros((2, 5, 3)))
        kw = {"key": "nope"} if content == "key" else {"label_key": "lbl"} if content == "labelkey" else {"key": "data"}
    with pytest.raises(MedgenError, match=match):
        run_convert(_opts([path], tmp_path / "o", **kw))
    assert not (tmp_path / "o").exists()


def test_dataset_bounds_and_none_normalizations(tmp_path):
    clouds = _clouds(n=4, p=50)
    src = _fixed(tmp_path / "a.h5", clouds)
    run_convert(_opts([src], tmp_path / "d", normalize="dataset", val_fraction=0))
    affs = [np.array(r["affine"]) for r in _manifest(tmp_path / "d")]
    assert all(np.allclose(a, affs[0]) for a in affs)
    allpts = np.concatenate(clouds)
    size = np.max((allpts.max(0) - allpts.min(0)) / (R * 0.9))
    assert affs[0][0, 0] == pytest.approx(size, rel=1e-5)
    # Explicit bounds smaller than the clouds: outside points are dropped and counted.
    summary = run_convert(_opts([src], tmp_path / "b", bounds=[[-8, -8, -8], [8, 8, 8]], val_fraction=0))
    assert summary.sources[0].outside_points > 0
    rec = _manifest(tmp_path / "b")[0]
    assert rec["normalization"]["mode"] == "bounds" and rec["affine"][0][0] == pytest.approx(16 / R)
    # none + spacing: voxel (i, j, k) covers [i, i+1) * spacing.
    pts = np.array([[[0.5, 0.5, 0.5], [3.9, 0.1, 7.9], [100.0, 0, 0]]])
    _fixed(tmp_path / "n.h5", list(pts))
    s = run_convert(_opts([tmp_path / "n.h5"], tmp_path / "n", normalize="none", spacing=(0.5, 0.5, 0.5),
                          resolution=(8, 8, 16), val_fraction=0))
    vol = np.asarray(nib.load(str(tmp_path / "n" / "train" / "n_00000.nii.gz")).dataobj)
    assert vol[1, 1, 1] == 1 and vol[7, 0, 15] == 1 and vol.sum() == 2 and s.sources[0].outside_points == 1


def test_weights_use_the_value_column(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(1, 60, 3))
    vals = rng.random((1, 60, 1))
    src = _fixed(tmp_path / "w.h5", list(np.concatenate([pts, vals], -1)))
    run_convert(_opts([src], tmp_path / "o", method="density", weights=True, val_fraction=0))
    rec = _manifest(tmp_path / "o")[0]
    g = np.array(rec["normalization"]["origin"]), np.array(rec["normalization"]["voxel_size"])
    h, _ = np.histogramdd((pts[0] - g[0]) / g[1], bins=R, range=[(0, R)] * 3, weights=vals[0, :, 0])
    vol = np.asarray(nib.load(str(tmp_path / "o" / rec["file"])).dataobj)
    np.testing.assert_allclose(vol, h / h.max(), rtol=1e-5, atol=1e-7)
    with pytest.raises(MedgenError, match="no per-point values"):
        run_convert(_opts([_fixed(tmp_path / "x.h5", [pts[0]])], tmp_path / "x", weights=True))


def _report_sigint(queue: "multiprocessing.Queue[object]") -> None:
    import signal

    queue.put(signal.getsignal(signal.SIGINT))


def test_workers_are_born_ignoring_ctrl_c() -> None:
    """A Ctrl-C that lands while a spawned worker is still importing must not raise there (it
    printed the worker's KeyboardInterrupt traceback): workers start with SIGINT ignored, and the
    parent gets its own handler back right after."""
    import multiprocessing
    import signal

    from medgen_cli.data.convert_worker import workers_born_ignoring_sigint

    ctx = multiprocessing.get_context("spawn")
    before = signal.getsignal(signal.SIGINT)
    seen = []
    for ignore in (True, False):
        queue = ctx.Queue()
        if ignore:
            with workers_born_ignoring_sigint():
                proc = ctx.Process(target=_report_sigint, args=(queue,))
                proc.start()
        else:
            proc = ctx.Process(target=_report_sigint, args=(queue,))
            proc.start()
        seen.append(queue.get(timeout=60))
        proc.join(timeout=60)
    assert seen[0] == signal.SIG_IGN
    assert seen[1] is signal.default_int_handler  # without it a worker would raise KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is before
