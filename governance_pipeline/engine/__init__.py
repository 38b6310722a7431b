"""The engine: pure-Python token processing. It does not import Dagster or the plugins package;
plugins are found through entry points (see ``registry.py``)."""
