"""The ground layer: settings, the error root, drift statistics, atomic reports, CLI helpers.

Everything else of featurestack, models_py and validation may import from here; nothing here
imports any of them (import-linter's layers contract in pyproject.toml enforces it).
"""
