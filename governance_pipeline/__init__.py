"""governance_pipeline: an audited, Dagster-orchestrated pipeline for regulated data processing."""

__version__ = "0.1.0"
