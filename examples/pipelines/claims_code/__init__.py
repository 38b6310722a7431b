"""Example user code for ``examples/pipelines/claims_pandas.yaml`` (imported from this directory)."""
