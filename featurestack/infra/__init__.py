"""The glue to the tools: dbt runs, Feast apply / materialize / codegen / consistency, the
online reader over our stores, and the services of the profiles (Redis, PostgreSQL, MLflow).

Above the ground layer (featurestack.core) and our Feast stores (featurestack.stores); below
the gate (validation) and the models (models_py), which use it.
"""
