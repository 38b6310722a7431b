"""One folder per pipeline, each with a defs.yaml naming a governance_pipeline.PipelineComponent."""
