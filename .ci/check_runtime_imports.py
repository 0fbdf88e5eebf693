"""Fail when scaler_core or scaler_dask imports something that `pip install .` does not bring.

Run it in a virtual environment made only by the README's first command (`pip install -e .`):

1. Every absolute import of a third-party module, anywhere in the packages (inside functions
   too), belongs to a distribution that [project.dependencies] names itself. One that only
   arrives as a dependency of another package does not count: it can vanish with that
   package's next release. Optional modules (scaler_core.optional.OPTIONAL_MODULES) are only
   to be imported through scaler_core.optional.require, which names the extra to install.
2. Every module of both packages imports.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pathlib
import pkgutil
import re
import sys

PACKAGES = ("scaler_core", "scaler_dask")
DISTRIBUTION = "scaler-engine"
ROOT = pathlib.Path(__file__).resolve().parent.parent


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    declared = set()
    for requirement in importlib.metadata.requires(DISTRIBUTION) or []:
        if "extra" in requirement.partition(";")[2]:
            continue  # belongs to an optional extra
        declared.add(normalized(re.match(r"[A-Za-z0-9._-]+", requirement).group(0)))
    return declared


def third_party_imports() -> dict[str, list[str]]:
    """top-level module name -> places that import it"""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES:
                        continue
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def main() -> int:
    from scaler_core.optional import OPTIONAL_MODULES

    problems = []
    declared = declared_distributions()
    module_owners = importlib.metadata.packages_distributions()
    for module, places in sorted(third_party_imports().items()):
        where = ", ".join(places)
        if module in OPTIONAL_MODULES:
            problems.append(f"optional module {module!r} imported directly at {where}: "
                            f"use scaler_core.optional.require so a missing extra gets a clear message")
            continue
        owners = {normalized(owner) for owner in module_owners.get(module, [])}
        if not owners:
            problems.append(f"{module!r} (imported at {where}) is not installed by `pip install .`: "
                            f"declare it in [project.dependencies] of pyproject.toml")
        elif not owners & declared:
            problems.append(f"{module!r} (imported at {where}) comes from {sorted(owners)}, which "
                            f"[project.dependencies] does not name: it is only here as another package's dependency")
    for package in PACKAGES:
        importlib.import_module(package)
        for module in pkgutil.walk_packages(sys.modules[package].__path__, package + "."):
            try:
                importlib.import_module(module.name)
            except Exception as error:  # noqa: BLE001 - report every module that fails, whatever the reason
                problems.append(f"import {module.name} fails: {type(error).__name__}: {error}")
    for problem in problems:
        print(f"check_runtime_imports: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_runtime_imports: every import of {', '.join(PACKAGES)} is a declared dependency "
              f"({', '.join(sorted(declared))}) or optional ({', '.join(sorted(OPTIONAL_MODULES))})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
