"""Dagster orchestration: one job per pipeline, the Landscape resource, sensors, the CLI bridge.

Dagster is imported here and in ``governance_pipeline.definitions`` only; the engine and the
Landscape never import it.
"""
