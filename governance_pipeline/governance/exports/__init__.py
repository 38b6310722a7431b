"""Evidence exports: bundle models, PDF rendering, bundle directories, offline verification."""
