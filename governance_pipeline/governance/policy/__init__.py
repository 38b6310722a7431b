"""Runtime policies: versioned YAML files of typed rules, compiled once per run and evaluated on
tokens as they pass the nodes the pipeline attaches them to.

The rule library: ``model`` (the policy file, its rule kinds and error codes), ``rules``
(``compile_policy`` and the public rule API), ``base`` (``Subject``, ``RuleVerdict``),
``field_rules``, ``text_rules`` and ``run_rules`` (the rule kinds), ``counters`` (budget and rate
state across chunks), ``detectors`` (PII and secrets), ``text`` (normalisation and bounds) and
``patterns`` (RE2 user patterns). The rule reference for users is ``docs/policies.md``.
"""
