"""The synthetic run shared by the tests: re-exported from the package.

``governance-pipeline demo`` records the same run, so there is one implementation, in
``governance_pipeline/cli/demo.py``; change it there.
"""

from governance_pipeline.cli.demo import MIN_ROWS, TENANT, SyntheticRun, record_synthetic_run

__all__ = ["MIN_ROWS", "TENANT", "SyntheticRun", "record_synthetic_run"]
