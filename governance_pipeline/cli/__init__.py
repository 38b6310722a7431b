"""The ``governance-pipeline`` command line: the top layer, it may import every other layer."""
