"""An example `dg` project: governance pipelines as Dagster components."""
