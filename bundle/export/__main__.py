"""Command line of the exports and checks (see docs/ecosystem.md)::

    python -m bundle.export onnx [--config_file configs/inference.json] [--ckpt_file ...] [--filepath ...]
    python -m bundle.export zoo [--bundle_root .] [--schema_file ...]
    python -m bundle.export large_files [--bundle_root .] [--url_prefix ...]
"""

from __future__ import annotations

import logging

import fire

from bundle.export.bundle_export import export_bundle_onnx
from bundle.export.zoo import verify_zoo_bundle, write_large_files


def _zoo(bundle_root: str = ".", schema_file: str | None = None) -> None:
    """Run the Model Zoo checks and print one line per check."""
    for name, result in verify_zoo_bundle(bundle_root, schema_file).items():
        print(f"{name}: ok ({result})")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    fire.Fire({"onnx": export_bundle_onnx, "zoo": _zoo, "large_files": lambda **kw: print(write_large_files(**kw))})
