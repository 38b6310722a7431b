"""Governance services: runtime policy, approvals and IR checks, the event outbox, evidence exports.

They sit above the engine (they may import contracts, landscape, engine, plugins) and below
orchestration and the CLI; they never import Dagster.
"""
