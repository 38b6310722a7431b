"""governance_pipeline: an audited, Dagster-orchestrated pipeline for regulated data processing."""

from typing import Any

__version__ = "0.1.0"


# ``governance_pipeline.PipelineComponent`` is the Dagster component type a ``defs.yaml`` names
# (registered for ``dg`` by the ``dagster_dg_cli.registry_modules`` entry point). Loaded on first
# use only: the engine imports this package and must not import Dagster.
def __getattr__(name: str) -> Any:
    if name == "PipelineComponent":
        from governance_pipeline.orchestration.component import PipelineComponent

        return PipelineComponent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "PipelineComponent"])
