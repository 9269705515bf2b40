"""Use a researcher's own INR without editing this library (SPEC, user 1).

Three routes reach the INR registry:

* the decorator :func:`xinc_bench.inrs.base.register_inr` in code that is imported;
* an installed package declaring an entry point in the group ``xinc_bench.inrs``
  (``my-inr = my_package.models:MyINR``), read by the registry on first look-up;
* a ``--model`` spec naming a class directly, resolved here by :func:`resolve_inr`:
  ``path/to/file.py:ClassName`` (the file is loaded, no install needed) or
  ``package.module:ClassName`` (the module is imported). The class is registered under
  the spec string itself, so records name exactly what was run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

from ..errors import XincError
from ..registry import INRS


def resolve_inr(spec: str) -> str:
    """The registered INR name for ``spec``, registering a ``file.py:Class`` or ``module:Class`` spec.

    Raises:
        XincError: unknown name; file or module missing or failing to import; class missing
            or not a ``torch.nn.Module`` subclass.
    """
    if spec in INRS:
        return spec
    location, separator, class_name = spec.rpartition(":")
    if not separator or not location or not class_name:
        try:
            INRS.entry(spec)  # not registered: raises the registry's message with the close matches
        except XincError as exc:
            raise XincError(f"{exc}. Or name a class: path/to/file.py:ClassName or package.module:ClassName") from None
    if location.endswith(".py") or "/" in location or "\\" in location:
        module = _load_file(Path(location))
    else:
        module = _import_module(location)
    INRS.add(spec, _module_class(module, class_name, spec), source=spec)
    return spec


def _load_file(path: Path) -> ModuleType:
    """Execute a Python file as a module named after its resolved path (reused if already loaded)."""
    if not path.is_file():
        raise XincError(f"INR file {path} does not exist; give path/to/file.py:ClassName with an existing file")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"xinc_bench_user_{re.sub(r'[^0-9a-zA-Z_]', '_', resolved.stem)}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise XincError(f"INR file {path} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the defining module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise XincError(f"importing INR file {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise XincError(
            f"cannot import module {name!r} ({exc}); install its package or add its folder to PYTHONPATH, "
            "or give path/to/file.py:ClassName"
        ) from exc
    except Exception as exc:
        raise XincError(f"importing INR module {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _module_class(module: ModuleType, class_name: str, spec: str) -> type[nn.Module]:
    """The ``nn.Module`` subclass ``class_name`` of ``module``; a clear error otherwise."""
    obj = getattr(module, class_name, None)
    if obj is None:
        found = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isclass(value) and issubclass(value, nn.Module) and value.__module__ == module.__name__
        )
        listing = ", ".join(found) if found else "none"
        raise XincError(f"{spec!r}: no class {class_name!r} there; nn.Module classes defined there: {listing}")
    if not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
        what = f"class {obj.__name__}" if inspect.isclass(obj) else f"an object of type {type(obj).__name__}"
        raise XincError(f"{spec!r} is {what}, not a torch.nn.Module subclass; name the INR class itself")
    return obj
