"""Who acts in a Dagster run: recorded in the operator log as the CLI records its actor.

In order: the run's config (``actor``), the run's tags (``governance/actor``, then Dagster's own
``dagster/user`` where the deployment sets it), ``$GOVERNANCE_ACTOR``, the OS user of the process.
"""

from __future__ import annotations

from collections.abc import Mapping

from governance_pipeline.governance.operator_log import OperatorSurface, default_actor

TAG_ACTOR = "governance/actor"
TAG_LAUNCHED_BY = "governance/launched_by"
_DAGSTER_USER_TAG = "dagster/user"


def run_actor(configured: str | None, tags: Mapping[str, str]) -> str:
    return configured or tags.get(TAG_ACTOR) or tags.get(_DAGSTER_USER_TAG) or default_actor()


def run_surface(tags: Mapping[str, str]) -> OperatorSurface:
    """A job the command line launched (``run``, ``resume``) is the CLI's action."""
    return OperatorSurface.CLI if tags.get(TAG_LAUNCHED_BY) == "cli" else OperatorSurface.DAGSTER
