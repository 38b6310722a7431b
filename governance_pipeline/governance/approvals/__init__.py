"""Approvals: ladders of stages, single-use tokens, the run gate, the export guard, SLA escalation.

``ApprovalService`` is the entry point for requests and decisions; ``require_run_approval``
(``gate``) and ``guard_export`` (``export_guard``) are the two places a token is redeemed.
"""

from governance_pipeline.governance.approvals.codes import InvalidReason, TokenRefused
from governance_pipeline.governance.approvals.ladders import (
    LADDERS_ENV,
    LadderCatalog,
    LadderSpec,
    StageSpec,
    load_ladders,
)
from governance_pipeline.governance.approvals.service import ApprovalService
from governance_pipeline.governance.approvals.sla import Escalation
from governance_pipeline.governance.approvals.views import ApprovalView

__all__ = ["LADDERS_ENV", "ApprovalService", "ApprovalView", "Escalation", "InvalidReason",
           "LadderCatalog", "LadderSpec", "StageSpec", "TokenRefused", "load_ladders"]
