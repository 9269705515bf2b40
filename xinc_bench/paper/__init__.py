"""The paper report (``xinc-bench paper``): the XINC paper's claims re-measured, with a verdict per claim.

:mod:`.claims` states the claims, the scores that test them and the verdict rule; :mod:`.evidence`
reads the records and aggregates them over seeds; :mod:`.build` runs the suite and the released
checkpoint; :mod:`.report` and :mod:`.figures` write the report.
"""

from .build import run_paper
from .claims import CLAIMS
from .report import write_paper_report

__all__ = ["CLAIMS", "run_paper", "write_paper_report"]
