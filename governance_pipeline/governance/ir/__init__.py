"""The pipeline definition as an intermediate representation (IR), checked before it may run.

``model`` turns a ``PipelineConfig`` into ordered, individually hashed steps and the ``ir_hash``;
``risk`` applies the declared risk rules (tiers 0-3: pass, escalate for approval, or reject);
``dag`` compares the IR with the graph actually built for execution (and with the manifest a
Dagster job carries since its code location loaded); ``record`` writes the ``ir.validated_*`` and
``ir.dag_diff_*`` events. The rule table is documented in ``docs/approvals.md``.
"""
