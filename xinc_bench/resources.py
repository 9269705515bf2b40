"""Where the bundled YAML files live: ``tasks/`` and ``configs/suites/``.

In a source checkout (and an editable install) they are the checkout's own folders; a wheel
installs copies inside the package (``xinc_bench/tasks``, ``xinc_bench/suites``, mapped in
``pyproject.toml``), so a plain ``pip install`` finds them too.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(checkout_folder: str, installed_name: str) -> Path:
    """The checkout's ``checkout_folder`` if this is a source checkout, else the installed copy."""
    checkout = _PACKAGE.parent / checkout_folder
    return checkout if checkout.is_dir() else _PACKAGE / installed_name
