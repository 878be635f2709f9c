"""Read point clouds from HDF5 files in the layouts ``medgen data convert-h5`` accepts.

Layouts (auto-detected; ``--key`` names the dataset or group to use):

- ``fixed``: one dataset ``[N, P, 3]`` or ``[N, P, 3+F]`` (PointNet style, e.g. ``data``), with an
  optional label dataset ``[N]`` or ``[N, 1]`` (``label``/``labels`` next to it, or ``--label-key``).
- ``groups``: a group holding one sub-group per sample, each with ``points`` ``[P_i, 3(+F)]``,
  optional ``values`` ``[P_i]`` and an optional ``label`` attribute or scalar dataset (a sub-group
  may also be a bare ``[P_i, 3(+F)]`` dataset).
- ``concat``: one ``[sum P_i, 3(+F)]`` dataset (``points``) with ``lengths``/``counts`` ``[N]`` or
  ``offsets`` ``[N]`` (start of each cloud) / ``[N + 1]`` (starts and the end) next to it.
- ``single``: one ``[P, 3(+F)]`` dataset (e.g. what ``medgen data to-points`` writes): one cloud.

Per-point values (used as weights with ``--weights``) are the first column after x, y, z, or the
``values`` dataset of a ``groups`` sub-group / next to a ``concat`` points array.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medgen_cli.errors import MedgenError

LABEL_KEYS = ("label", "labels")
LENGTH_KEYS = ("lengths", "counts", "sizes")
OFFSET_KEYS = ("offsets", "offset", "starts")


@dataclass
class Cloud:
    """One sample read from a file: ``points`` ``[P, 3]`` float64, optional ``values`` ``[P]``."""

    index: int
    points: np.ndarray
    values: np.ndarray | None
    label: int | None


@dataclass
class H5Layout:
    """How a file stores its clouds (see the module docstring)."""

    kind: str
    key: str
    n: int
    channels: int
    label_key: str | None = None
    lengths_key: str | None = None
    offsets_key: str | None = None
    values_key: str | None = None
    members: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line saying what convert-h5 will read."""
        each = " of each sample" if self.kind == "groups" else ""
        extra = f", labels from '{self.label_key}'{each}" if self.label_key else ", no labels"
        feats = f", {self.channels - 3} per-point value column(s)" if self.channels > 3 else ""
        vals = f", values from '{self.values_key}'{each}" if self.values_key else ""
        how = {"fixed": f"fixed-size array '{self.key}'", "groups": f"one sub-group per sample under '{self.key or '/'}'",
               "concat": f"concatenated array '{self.key}' split by '{self.lengths_key or self.offsets_key}'",
               "single": f"a single cloud '{self.key}'"}[self.kind]
        return f"{self.kind}: {self.n} cloud(s), {how}{feats}{vals}{extra}"


def open_h5(path: str | Path) -> Any:
    """Open an HDF5 file read-only, with one-line errors for a missing file or a non-HDF5 file."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise MedgenError(f"input file not found: {p}")
    if not h5py.is_hdf5(str(p)):
        raise MedgenError(f"{p} is not an HDF5 file", "convert-h5 reads .h5/.hdf5 point-cloud files")
    try:
        return h5py.File(str(p), "r")
    except OSError as exc:
        raise MedgenError(f"cannot open {p}: {exc}".splitlines()[0]) from exc


def describe_tree(f: Any) -> list[dict[str, Any]]:
    """Every group and dataset: ``{"path", "kind", "shape", "dtype", "attrs"}`` (groups: shape None)."""
    import h5py

    rows: list[dict[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        is_ds = isinstance(obj, h5py.Dataset)
        rows.append({"path": name, "kind": "dataset" if is_ds else "group",
                     "shape": list(obj.shape) if is_ds else None, "dtype": str(obj.dtype) if is_ds else None,
                     "attrs": sorted(obj.attrs.keys())})

    f.visititems(visit)
    return rows


def _natural(name: str) -> list[Any]:
    """Sort key that puts ``s2`` before ``s10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _datasets(group: Any) -> dict[str, Any]:
    import h5py

    return {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}


def _keys_hint(f: Any) -> str:
    rows = describe_tree(f)
    shown = [f"{r['path']}{tuple(r['shape']) if r['shape'] is not None else '/'}" for r in rows[:20]]
    return "keys in the file: " + (", ".join(shown) if shown else "(none)") + (" ..." if len(rows) > 20 else "")


def _check_channels(ds: Any, name: str) -> int:
    if ds.shape[-1] < 3:
        raise MedgenError(f"'{name}' has shape {tuple(ds.shape)}: the last dimension must be 3 (x, y, z) or more")
    return int(ds.shape[-1])


def _sibling(f: Any, key: str, names: tuple[str, ...]) -> str | None:
    parent = key.rsplit("/", 1)[0] if "/" in key else ""
    grp = f[parent] if parent else f
    for n in names:
        if n in grp:
            return f"{parent}/{n}" if parent else n
    return None


def _label_key(f: Any, key: str, n: int, label_key: str | None) -> str | None:
    if label_key is not None:
        if label_key not in f:
            raise MedgenError(f"label key '{label_key}' not found", _keys_hint(f))
        shape = f[label_key].shape
        if not shape or shape[0] != n or int(np.prod(shape)) != n:
            raise MedgenError(f"'{label_key}' has shape {tuple(shape)}, expected [{n}] labels (one per cloud)")
        return label_key
    found = _sibling(f, key, LABEL_KEYS)
    if found is not None and f[found].shape and f[found].shape[0] == n and int(np.prod(f[found].shape)) == n:
        return found
    return None


def _layout_for_key(f: Any, key: str, label_key: str | None) -> H5Layout:
    import h5py

    if key and key not in f:
        raise MedgenError(f"key '{key}' not found", _keys_hint(f))
    obj = f[key] if key else f  # "" or "/": the root group
    if isinstance(obj, h5py.Group):
        members = tuple(sorted(obj.keys(), key=_natural))
        if not members:
            raise MedgenError(f"group '{key}' is empty", _keys_hint(f))
        for m in members:
            sub = obj[m]
            pts = sub.get("points") if isinstance(sub, h5py.Group) else sub
            if not isinstance(pts, h5py.Dataset) or pts.ndim != 2:
                raise MedgenError(f"'{key}/{m}' holds no [P, 3] 'points' dataset", "a groups layout needs one sub-group with 'points' per sample")
        first = obj[members[0]]
        channels = _check_channels(first["points"] if isinstance(first, h5py.Group) else first, f"{key}/{members[0]}")
        subs = [obj[m] for m in members]
        # Per-sample 'values' datasets and 'label' attributes/datasets count when every sample has them.
        values = "values" if all(isinstance(g, h5py.Group) and "values" in g for g in subs) else None
        labels = "label" if all("label" in g.attrs or (isinstance(g, h5py.Group) and "label" in g) for g in subs) else None
        return H5Layout("groups", key, len(members), channels, label_key=labels, values_key=values, members=members)
    if obj.ndim == 3:
        channels = _check_channels(obj, key)
        return H5Layout("fixed", key, int(obj.shape[0]), channels, label_key=_label_key(f, key, int(obj.shape[0]), label_key))
    if obj.ndim == 2:
        channels = _check_channels(obj, key)
        lengths, offsets = _sibling(f, key, LENGTH_KEYS), _sibling(f, key, OFFSET_KEYS)
        values = _sibling(f, key, ("values",))
        if lengths or offsets:
            n = int(f[lengths].shape[0]) if lengths else int(f[offsets].shape[0])
            if offsets and not lengths and n >= 1 and int(f[offsets][-1]) == obj.shape[0]:
                n -= 1  # offsets of length N + 1 (starts plus the end)
            return H5Layout("concat", key, n, channels, label_key=_label_key(f, key, n, label_key),
                            lengths_key=lengths, offsets_key=None if lengths else offsets, values_key=values)
        return H5Layout("single", key, 1, channels, values_key=values)
    raise MedgenError(f"'{key}' has shape {tuple(obj.shape)}: expected [N, P, 3+] (fixed), [P, 3+] (one cloud or "
                      "concatenated with lengths/offsets) or a group of samples")


def detect_layout(f: Any, key: str | None = None, label_key: str | None = None) -> H5Layout:
    """Work out how ``f`` stores its clouds (``key`` forces the dataset/group to read).

    Raises:
        MedgenError: missing key (the existing keys are listed), wrong rank or last dimension,
            or no recognisable layout.
    """
    import h5py

    if key is not None:
        return _layout_for_key(f, key.strip("/"), label_key)
    top = _datasets(f)
    for name in ("data", "points", "clouds", "pointclouds", "pc"):
        if name in top and top[name].ndim in (2, 3):
            return _layout_for_key(f, name, label_key)
    rank3 = [k for k, d in top.items() if d.ndim == 3 and d.shape[-1] >= 3]
    if len(rank3) == 1:
        return _layout_for_key(f, rank3[0], label_key)
    if len(rank3) > 1:
        raise MedgenError(f"several [N, P, C] datasets: {', '.join(rank3)}", "choose one with --key")

    def sample_like(g: Any) -> bool:
        return bool(len(g)) and all(
            (isinstance(s, h5py.Group) and "points" in s) or (isinstance(s, h5py.Dataset) and s.ndim == 2)
            for s in g.values())

    if sample_like(f) and len(f) > 1:  # one sub-group (or one [P, 3] dataset) per sample at the root
        return _layout_for_key(f, "", label_key)
    for name, v in f.items():
        if isinstance(v, h5py.Group) and sample_like(v):
            return _layout_for_key(f, name, label_key)
    rank2 = [k for k, d in top.items() if d.ndim == 2 and d.shape[-1] >= 3]
    if len(rank2) == 1:
        return _layout_for_key(f, rank2[0], label_key)
    raise MedgenError("no point-cloud layout recognised", _keys_hint(f) + "; pass --key")


def _label_of(obj: Any) -> int | None:
    if "label" in obj.attrs:
        return int(np.asarray(obj.attrs["label"]).reshape(-1)[0])
    if hasattr(obj, "keys") and "label" in obj:
        return int(np.asarray(obj["label"]).reshape(-1)[0])
    return None


def _split(arr: np.ndarray, index: int, values: np.ndarray | None, label: int | None) -> Cloud:
    arr = np.asarray(arr)
    pts = arr[:, :3].astype(np.float64)
    if values is None and arr.shape[1] > 3:
        values = arr[:, 3]
    return Cloud(index, pts, None if values is None else np.asarray(values, dtype=np.float64).reshape(-1), label)


def read_clouds(f: Any, layout: H5Layout, start: int, stop: int) -> list[Cloud]:
    """Clouds ``start .. stop-1`` of a file (contiguous reads: fast for every layout)."""
    import h5py

    if layout.kind == "fixed":
        block = np.asarray(f[layout.key][start:stop])
        labels = np.asarray(f[layout.label_key][start:stop]).reshape(-1) if layout.label_key else None
        return [_split(block[i], start + i, None, None if labels is None else int(labels[i])) for i in range(len(block))]
    if layout.kind == "single":
        vals = np.asarray(f[layout.values_key]) if layout.values_key else None
        return [_split(np.asarray(f[layout.key]), 0, vals, None)]
    if layout.kind == "groups":
        grp = f[layout.key] if layout.key else f
        out = []
        for i in range(start, stop):
            sub = grp[layout.members[i]]
            if isinstance(sub, h5py.Group):
                vals = np.asarray(sub["values"]) if "values" in sub else None
                out.append(_split(np.asarray(sub["points"]), i, vals, _label_of(sub)))
            else:
                out.append(_split(np.asarray(sub), i, None, _label_of(sub)))
        return out
    starts, ends = _bounds(f, layout)
    lo, hi = int(starts[start]), int(ends[stop - 1])
    block = np.asarray(f[layout.key][lo:hi])
    vals = np.asarray(f[layout.values_key][lo:hi]) if layout.values_key else None
    labels = np.asarray(f[layout.label_key][start:stop]).reshape(-1) if layout.label_key else None
    return [_split(block[int(starts[i]) - lo:int(ends[i]) - lo], i,
                   None if vals is None else vals[int(starts[i]) - lo:int(ends[i]) - lo],
                   None if labels is None else int(labels[i - start])) for i in range(start, stop)]


def _bounds(f: Any, layout: H5Layout) -> tuple[np.ndarray, np.ndarray]:
    total = int(f[layout.key].shape[0])
    if layout.lengths_key:
        lengths = np.asarray(f[layout.lengths_key]).astype(np.int64).reshape(-1)
        ends = np.cumsum(lengths)
        starts = ends - lengths
    else:
        off = np.asarray(f[layout.offsets_key]).astype(np.int64).reshape(-1)
        starts = off[: layout.n]
        ends = np.append(off[1:], total)[: layout.n] if len(off) == layout.n else off[1: layout.n + 1]
    if np.any(ends < starts) or (len(ends) and (ends[-1] > total or starts[0] < 0)):
        raise MedgenError(f"'{layout.lengths_key or layout.offsets_key}' does not split '{layout.key}' "
                          f"({total} points) into {layout.n} clouds", "lengths must sum to the point count; offsets must increase")
    return starts, ends


def inspect_h5(path: str | Path, key: str | None = None, label_key: str | None = None,
               limit: int = 1000) -> dict[str, Any]:
    """The library side of ``medgen data inspect``: the file's tree and what ``convert-h5`` would
    read from it (its layout and a check of the first ``limit`` clouds).

    Returns:
        ``{"file", "tree", "layout" (kind or None), "plan" (one sentence), "n", "label_key"}`` plus,
        when readable, ``checked``, ``points_min``, ``points_max``, ``nonfinite_points``, ``empty_clouds``.
    """
    with open_h5(path) as f:
        tree = describe_tree(f)
        try:
            layout = detect_layout(f, key, label_key)
        except MedgenError as exc:
            return {"file": str(path), "tree": tree, "layout": None, "plan": f"convert-h5 cannot read this file: {exc}",
                    "n": 0, "label_key": None}
        n = min(layout.n, limit)
        clouds = read_clouds(f, layout, 0, n) if n else []
    counts = [len(c.points) for c in clouds]
    return {"file": str(path), "tree": tree, "layout": layout.kind, "plan": layout.describe(), "n": layout.n,
            "label_key": layout.label_key, "checked": n, "points_min": int(min(counts, default=0)),
            "points_max": int(max(counts, default=0)),
            "nonfinite_points": int(sum(int((~np.isfinite(c.points).all(axis=1)).sum()) for c in clouds)),
            "empty_clouds": int(sum(1 for k in counts if k == 0))}
