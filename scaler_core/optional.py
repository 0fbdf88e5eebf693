"""Optional features: the module each one imports and the pip extra that installs it.

Everything else the packages import is a declared dependency; `.ci/check_runtime_imports.py`
fails CI for any import that is neither declared nor listed here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> extra of scaler-engine that brings it
OPTIONAL_MODULES = {
    "uvloop": "uvloop",
    "graphblas": "graphblas",
}


class MissingOptionalDependency(ImportError):
    """An optional feature was asked for, but the package behind it is not installed."""


def install_hint(module_name: str) -> str:
    return f"pip install 'scaler-engine[{OPTIONAL_MODULES[module_name]}]'"


def require(module_name: str, feature: str) -> ModuleType:
    """Import `module_name` for `feature`, or raise an error naming the extra to install."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise MissingOptionalDependency(
            f"{feature} needs the optional package '{module_name}', which is not installed here: "
            f"{install_hint(module_name)}") from error
