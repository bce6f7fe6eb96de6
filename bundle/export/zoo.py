"""The MONAI Model Zoo's checks on this bundle, run offline (``python -m bundle.export zoo``).

Re-implements, with MONAI's own functions, what the zoo's ``ci/verify_bundle.py`` (full mode) and its pre-commit
hooks check (Project-MONAI/model-zoo, snapshot dfae206):

- ``files``: ``configs/metadata.json`` and ``LICENSE`` exist; so do the preferred ``models/model.pt`` and
  ``configs/inference.json``; ``docs/README.md`` and ``docs/data_license.txt`` too;
- ``version``: ``version`` and ``changelog`` exist and the changelog has an entry for the version;
- ``metadata``: ``monai.bundle.verify_metadata`` against a local copy of the metadata's schema;
- ``large_files``: every bundle file over the zoo's pre-commit limit (1024 kB) is listed in ``large_files.yml`` and
  ``monai.bundle.download_large_files`` accepts the list (present files must match their hash);
- ``json_format``: every JSON file is formatted as ``pretty-format-json --no-sort-keys --indent=4`` would leave it;
- ``readme``: ``docs/README.md`` has the headings of the zoo's bundles;
- ``net_in_out``: ``monai.bundle.verify_net_in_out`` of ``network_def`` with the metadata's shapes;
- ``torchscript``: ``monai.bundle.ckpt_export`` of ``models/model.pt`` to a temporary ``.ts`` that
  ``torch.jit.load`` reads back (and ``models/model.ts`` when present).

The zoo's ``verify_version_changes`` also refuses a version already published in its ``model_info.json``; that
needs the zoo repository and is not checked here.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from monai.bundle import ckpt_export, download_large_files, verify_metadata, verify_net_in_out
from monai.config import PathLike

from bundle.io.atomic import atomic_write_text

__all__ = ["ZOO_CHECKS", "README_HEADINGS", "LARGE_FILE_LIMIT_KB", "verify_zoo_bundle", "write_large_files"]

LARGE_FILE_LIMIT_KB = 1024  # the zoo's pre-commit `check-added-large-files --maxkb=1024`
NECESSARY_FILES = ("configs/metadata.json", "LICENSE")
PREFERRED_FILES = ("models/model.pt", "configs/inference.json", "docs/README.md", "docs/data_license.txt")
BUNDLE_DIRS = ("configs", "docs", "models", "bundle")  # what a zoo archive of this bundle holds, with LICENSE
README_HEADINGS = (
    "# Model Overview",
    "## Data",
    "## Training configuration",
    "### Input",
    "### Output",
    "## Performance",
    "## MONAI Bundle Commands",
    "# References",
    "# License",
)
ZOO_CHECKS = ("files", "version", "metadata", "large_files", "json_format", "readme", "net_in_out", "torchscript")


def _bundle_files(root: Path) -> list[Path]:
    """The files a zoo archive of the bundle would hold (no caches, no generated ``.ts``/``.onnx``)."""
    files = [root / "LICENSE", root / "large_files.yml"]
    for d in BUNDLE_DIRS:
        files += [p for p in (root / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(p for p in files if p.is_file() and p.suffix not in (".ts", ".onnx", ".pyc"))


def _check_files(root: Path) -> str:
    missing = [f for f in (*NECESSARY_FILES, *PREFERRED_FILES) if not (root / f).is_file()]
    if missing:
        raise ValueError(f"bundle {root} lacks {missing}.")
    return f"{len(NECESSARY_FILES) + len(PREFERRED_FILES)} required/preferred files present"


def _check_version(root: Path) -> str:
    meta = json.loads((root / "configs/metadata.json").read_text())
    for key in ("version", "changelog"):
        if key not in meta:
            raise ValueError(f"configs/metadata.json has no {key!r}.")
    if meta["version"] not in meta["changelog"]:
        raise ValueError(f"configs/metadata.json: version {meta['version']} has no changelog entry.")
    return f"version {meta['version']} is in the changelog"


def _check_metadata(root: Path, schema_file: Path) -> str:
    verify_metadata(meta_file=str(root / "configs/metadata.json"), filepath=str(schema_file))
    return f"metadata verified against {schema_file.name}"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_large_files(root: Path) -> str:
    lf = root / "large_files.yml"
    entries = ((yaml.safe_load(lf.read_text()) or {}).get("large_files") or []) if lf.is_file() else []
    listed = {e["path"] for e in entries}
    big = [p.relative_to(root).as_posix() for p in _bundle_files(root) if p.stat().st_size > LARGE_FILE_LIMIT_KB * 1024]
    unlisted = sorted(set(big) - listed)
    if unlisted:
        raise ValueError(f"files over {LARGE_FILE_LIMIT_KB} kB not in large_files.yml: {unlisted}.")
    if listed:
        download_large_files(bundle_path=str(root))  # present files: hash check only, nothing is downloaded
    return f"{len(big)} file(s) over {LARGE_FILE_LIMIT_KB} kB, all listed with matching hashes"


def _check_json_format(root: Path) -> str:
    bad = []
    files = [p for p in _bundle_files(root) if p.suffix == ".json"]
    for p in files:
        text = p.read_text(encoding="utf-8")
        if text != json.dumps(json.loads(text), indent=4, ensure_ascii=True) + "\n":
            bad.append(p.relative_to(root).as_posix())
    if bad:
        raise ValueError(f"JSON files not formatted with 4-space indent (pretty-format-json --indent=4): {bad}.")
    return f"{len(files)} JSON files formatted with 4-space indent"


def _check_readme(root: Path) -> str:
    lines = {line.strip() for line in (root / "docs/README.md").read_text(encoding="utf-8").splitlines()}
    missing = [h for h in README_HEADINGS if h not in lines]
    if missing:
        raise ValueError(f"docs/README.md lacks the headings {missing}.")
    return f"{len(README_HEADINGS)} zoo headings present"


def _check_net_in_out(root: Path) -> str:
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(root / "configs/metadata.json"),
        config_file=str(root / "configs/inference.json"),
        bundle_root=str(root),
        device="cpu",
        n=4,
    )
    return "network_def input/output shapes and dtypes match the metadata"


def _check_torchscript(root: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        ts = Path(tmp) / "verify_model.ts"
        ckpt_export(
            net_id="network_def",
            filepath=str(ts),
            ckpt_file=str(root / "models/model.pt"),
            meta_file=str(root / "configs/metadata.json"),
            config_file=str(root / "configs/inference.json"),
            bundle_root=str(root),
        )
        torch.jit.load(str(ts))
    if (root / "models/model.ts").is_file():
        torch.jit.load(str(root / "models/model.ts"))
    return "ckpt_export to TorchScript and torch.jit.load succeeded"


def verify_zoo_bundle(
    bundle_root: PathLike = ".", schema_file: PathLike | None = None, checks: tuple[str, ...] = ZOO_CHECKS
) -> dict[str, str]:
    """
    Run the Model Zoo's checks (see the module docstring) on a bundle folder, offline.

    Args:
        bundle_root: the bundle folder. Defaults to ``"."``.
        schema_file: the metadata schema; None uses ``tests/fixtures/meta_schema_20240725.json`` in the bundle.
        checks: which of ``ZOO_CHECKS`` to run, in that order.

    Returns:
        ``{check: one-line result}`` for the checks that passed.

    Raises:
        ValueError: when a check fails (the message names the check and what is wrong), or ``checks`` has an
            unknown name.
    """
    root = Path(bundle_root).resolve()
    schema = Path(schema_file) if schema_file is not None else root / "tests/fixtures/meta_schema_20240725.json"
    unknown = [c for c in checks if c not in ZOO_CHECKS]
    if unknown:
        raise ValueError(f"checks must be among {ZOO_CHECKS}, got {unknown}.")
    runners: dict[str, Callable[[], str]] = {
        "files": lambda: _check_files(root),
        "version": lambda: _check_version(root),
        "metadata": lambda: _check_metadata(root, schema),
        "large_files": lambda: _check_large_files(root),
        "json_format": lambda: _check_json_format(root),
        "readme": lambda: _check_readme(root),
        "net_in_out": lambda: _check_net_in_out(root),
        "torchscript": lambda: _check_torchscript(root),
    }
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # as the zoo's verify_bundle.py does, so configs can import `bundle`
    results = {}
    for name in checks:
        try:
            results[name] = runners[name]()
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"zoo check {name!r} failed for bundle {root}: {first}") from e
    return results


def write_large_files(bundle_root: PathLike = ".", url_prefix: str = "") -> Path:
    """
    Write ``large_files.yml`` listing every bundle file over ``LARGE_FILE_LIMIT_KB`` with its md5 (run it after
    the weights change).

    Args:
        bundle_root: the bundle folder.
        url_prefix: where the files are published; each url is ``url_prefix + path``. Empty until published (a
            present file is then only hash-checked).

    Returns:
        the path written.
    """
    root = Path(bundle_root).resolve()
    big = [p for p in _bundle_files(root) if p.stat().st_size > LARGE_FILE_LIMIT_KB * 1024]
    lines = ["large_files:"]
    for p in big:
        rel = p.relative_to(root).as_posix()
        url = f"{url_prefix}{rel}" if url_prefix else ""
        lines += [f'- path: "{rel}"', f'  url: "{url}"', f'  hash_val: "{_md5(p)}"', '  hash_type: "md5"']
    return atomic_write_text(root / "large_files.yml", "\n".join(lines) + "\n")
