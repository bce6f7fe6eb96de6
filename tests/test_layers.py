"""The package's layering (docs/architecture.md): a module imports only its own package or a lower layer, nothing
on the product path imports the research package, and the product configs never name it. Read from the source
with ``ast`` (function-level imports included), so nothing is imported to check it."""

from __future__ import annotations

import ast
import json
import unittest
from pathlib import Path

import bundle

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bundle"

# lowest first; packages on one rank may not import each other
LAYERS: dict[str, int] = {
    "tiers": 0,
    "networks": 1,
    "lesions": 1,
    "io": 2,
    "transforms": 3,
    "inferers": 4,
    "metrics": 4,
    "data": 5,
    "engines": 6,
    "export": 7,
    "classification": 8,
    "experiments": 9,
}


def top_package(module: str) -> str | None:
    """``"io"`` for ``bundle.io.writers``; None outside ``bundle``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "bundle" and len(parts) > 1 else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = top_package(module_name(path))
        if mine is None:
            continue  # bundle/__init__.py
        for line, name in imported_modules(path):
            theirs = top_package(name)
            if theirs is None or theirs == mine:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if theirs not in LAYERS:
                problems.append(f"{where}: unknown package bundle.{theirs} (add it to LAYERS)")
            elif LAYERS[theirs] >= LAYERS[mine]:
                problems.append(f"{where}: bundle.{theirs} (layer {LAYERS[theirs]}) is not below bundle.{mine} "
                                f"(layer {LAYERS[mine]})")
    return problems


class TestLayers(unittest.TestCase):
    def test_every_package_has_a_layer(self):
        packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
        modules = {p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
        self.assertEqual(packages | modules, set(LAYERS))

    def test_imports_go_down_only(self):
        self.assertEqual(violations(), [])

    def test_the_check_sees_a_violation(self):
        """The checker itself can fail: an upward import written into a temporary module is reported."""
        probe = PACKAGE / "io" / "_layer_probe.py"
        probe.write_text("from bundle.engines import evaluator\n\n\ndef f():\n    from ..experiments import ablation\n")
        try:
            found = [v for v in violations() if "_layer_probe" in v]
        finally:
            probe.unlink()
        self.assertEqual(len(found), 2, found)

    def test_product_configs_never_name_the_research_package(self):
        """No component (``_target_``) or expression (``$...``) of a config in configs/ reaches into
        bundle.experiments; prose such as metadata.json's changelog may mention it."""

        def code(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "_target_" and isinstance(value, str):
                        yield value
                    else:
                        yield from code(value)
            elif isinstance(node, list):
                for value in node:
                    yield from code(value)
            elif isinstance(node, str) and node.startswith(("$", "%")):
                yield node

        for path in sorted((ROOT / "configs").rglob("*.json")):
            found = [c for c in code(json.loads(path.read_text())) if "bundle.experiments" in c]
            self.assertEqual(found, [], f"{path.relative_to(ROOT)} runs code of bundle.experiments")

    def test_package_docstring_names_every_package_and_version_is_the_metadata_version(self):
        for name in LAYERS:
            self.assertIn(f"``{name}``", bundle.__doc__, f"bundle/__init__.py docstring does not name {name}")
        metadata = json.loads((ROOT / "configs" / "metadata.json").read_text())
        self.assertEqual(bundle.__version__, metadata["version"])


if __name__ == "__main__":
    unittest.main()
