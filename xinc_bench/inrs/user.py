"""Use a researcher's own INR without editing this library (SPEC, user 1).

Three routes reach the INR registry:

* the decorator :func:`xinc_bench.inrs.base.register_inr` in code that is imported;
* an installed package declaring an entry point in the group ``xinc_bench.inrs``
  (``my-inr = my_package.models:MyINR``), read by the registry on first look-up;
* a ``--model`` spec naming a class directly, resolved here by :func:`resolve_inr`:
  ``path/to/file.py:ClassName`` (the file is loaded, no install needed) or
  ``package.module:ClassName`` (the module is imported). The class is registered under
  the spec string itself, so records name exactly what was run.

A run folder is data, never code. A spec read from a file (``model.json``, a record) goes
through :func:`resolve_stored_inr`, which imports the file or module it names only when the
user trusts it (``--trust-code``, the ``trust_remote_code`` convention of transformers) or gave
the same spec on the command line, and only when the file still has the sha256 recorded at fit
time (:func:`code_provenance`). Registered names (built-in, decorator, entry point) need no trust.
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
from typing import Any, Callable, NamedTuple, TypeVar

from torch import nn

from ..errors import XincError
from ..registry import INRS

T = TypeVar("T")


class CodeRef(NamedTuple):
    """The code a ``location:ClassName`` spec names: a Python file or an importable module."""

    kind: str  # "file" or "module"
    location: str  # the path as written, or the dotted module name
    class_name: str

    def describe(self) -> str:
        """``code file X`` or ``module X``, for messages."""
        return f"code file {self.location}" if self.kind == "file" else f"module {self.location}"


def code_ref(spec: str) -> CodeRef | None:
    """The file or module that resolving ``spec`` imports; None for a registered name.

    A name registered by the decorator or an entry point (``source`` other than the spec
    itself) names no code; neither does a bare name without ``:``.
    """
    if spec in INRS and INRS.entry(spec).metadata.get("source") != spec:
        return None
    location, separator, class_name = spec.rpartition(":")
    if not separator or not location or not class_name:
        return None
    kind = "file" if location.endswith(".py") or "/" in location or "\\" in location else "module"
    return CodeRef(kind, location, class_name)


def resolve_inr(spec: str, *, sha256: str | None = None) -> str:
    """The registered INR name for ``spec``, registering a ``file.py:Class`` or ``module:Class`` spec.

    ``sha256``: the digest the file must have (recorded at fit time); a file or module whose
    source differs is refused before it runs. A spec already resolved in this process is checked
    against the digest of the source it was loaded from.

    Raises:
        XincError: unknown name; file or module missing, changed or failing to import; class
            missing or not a ``torch.nn.Module`` subclass.
    """
    ref = code_ref(spec)
    if spec in INRS:
        if ref is not None:
            _check_digest(ref.describe(), INRS.entry(spec).metadata["code"].get("sha256"), sha256)
        return spec
    if ref is None:
        try:
            INRS.entry(spec)  # not registered: raises the registry's message with the close matches
        except XincError as exc:
            raise XincError(f"{exc}. Or name a class: path/to/file.py:ClassName or package.module:ClassName") from None
    if ref.kind == "file":
        module, code = _load_file(Path(ref.location), sha256)
    else:
        module, code = _import_module(ref.location, sha256)
    INRS.add(spec, _module_class(module, ref.class_name, spec), source=spec, code=code)
    return spec


def code_provenance(spec: str) -> dict[str, str] | None:
    """What to store beside a model fitted from ``spec``: the code's file and sha256 (None for registered names).

    ``{"file": path, "sha256": hex}`` for a file spec; ``{"module": name, "file": origin,
    "sha256": hex}`` for a module spec (no ``file``/``sha256`` for a module without a source
    file). The digest is the one of the source that was imported; ``spec`` is resolved first.
    """
    code = INRS.entry(resolve_inr(spec)).metadata.get("code")
    return dict(code) if code is not None else None


def resolve_stored_inr(
    spec: str,
    code: dict[str, Any] | None,
    *,
    source: str,
    trust_code: bool = False,
    trusted_spec: str | None = None,
) -> str:
    """The registered INR name for a spec read from a file, importing its code only when trusted and unchanged.

    Args:
        spec: the model spec stored in ``source`` (``model.json``'s ``model``).
        code: the provenance stored beside it (:func:`code_provenance` at fit time), or None.
        source: the file the spec was read from, for messages.
        trust_code: the user trusts the code the file names (``--trust-code``).
        trusted_spec: the spec the user gave on the command line (``--model``); the stored spec
            is trusted when it is exactly this one.

    Raises:
        XincError: the spec names a file or module and is not trusted; the file's sha256 differs
            from the one recorded in ``code``; or any error of :func:`resolve_inr`.
    """
    ref = code_ref(spec)
    if ref is not None and not trust_code and spec != trusted_spec:
        raise XincError(
            f"{source} names {ref.describe()} ({spec}); loading it would run it: "
            f"pass --trust-code if you trust this folder (with `xinc-bench run`, giving --model {spec} is the same)"
        )
    try:
        return resolve_inr(spec, sha256=None if ref is None else _recorded_digest(code))
    except XincError as exc:
        raise XincError(f"{source}: {exc}") from None


def _recorded_digest(code: Any) -> str | None:
    """The sha256 in a stored ``code`` entry (None when none was recorded)."""
    sha256 = code.get("sha256") if isinstance(code, dict) else None
    if code is not None and not (isinstance(code, dict) and isinstance(sha256, (str, type(None)))):
        raise XincError(f"its 'code' entry is malformed ({code!r}); fit the model again to record it")
    return sha256


def _check_digest(what: str, actual: str | None, expected: str | None) -> None:
    """Refuse the code ``what`` when its source digest ``actual`` is not the recorded ``expected`` (if any)."""
    if expected is not None and actual != expected:
        raise XincError(
            f"{what} has changed since the model was fitted (sha256 {str(actual)[:12]}..., recorded "
            f"{expected[:12]}...); restore the file it was fitted with, or fit the model again"
        )


def _load_file(path: Path, sha256: str | None) -> tuple[ModuleType, dict[str, str]]:
    """Execute a Python file as a module, after checking its digest; ``(module, provenance)``.

    The bytes that were hashed are the bytes executed. The module is named after the file's
    resolved path and content, and reused if that name is already loaded.
    """
    if not path.is_file():
        raise XincError(f"INR file {path} does not exist; give path/to/file.py:ClassName with an existing file")
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    _check_digest(f"code file {path}", digest, sha256)
    code = {"file": str(path), "sha256": digest}
    resolved = path.resolve()
    place = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    name = f"xinc_bench_user_{re.sub(r'[^0-9a-zA-Z_]', '_', resolved.stem)}_{place}_{digest[:10]}"
    if name in sys.modules:
        return sys.modules[name], code
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None:
        raise XincError(f"INR file {path} cannot be loaded as a Python module; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the defining module up here
    try:
        exec(compile(source, str(resolved), "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[name]
        raise XincError(f"importing INR file {path} failed: {type(exc).__name__}: {exc}") from exc
    return module, code


def _import_module(name: str, sha256: str | None) -> tuple[ModuleType, dict[str, str]]:
    """Import a module, after checking the digest of its source file; ``(module, provenance)``."""
    if sha256 is not None:
        found = _importing(name, importlib.util.find_spec)  # imports the parent packages, not the module
        if found is not None:  # a missing module fails below with the import's own message
            _check_digest(f"module {name}", _file_digest(found.origin), sha256)
    module = _importing(name, importlib.import_module)
    origin = getattr(module, "__file__", None)
    digest = _file_digest(origin)
    return module, {"module": name} if digest is None else {"module": name, "file": str(origin), "sha256": digest}


def _importing(name: str, action: Callable[[str], T]) -> T:
    """``action(name)`` with import failures turned into XincError."""
    try:
        return action(name)
    except ModuleNotFoundError as exc:
        raise XincError(
            f"cannot import module {name!r} ({exc}); install its package or add its folder to PYTHONPATH, "
            "or give path/to/file.py:ClassName"
        ) from exc
    except Exception as exc:
        raise XincError(f"importing INR module {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _file_digest(origin: str | None) -> str | None:
    """sha256 of a module's source file; None when it has none (namespace or built-in module)."""
    if origin is None or not Path(origin).is_file():
        return None
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()


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
