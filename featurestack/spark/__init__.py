"""Spark as the offline engine (docs/spark.md). Nothing here imports pyspark at import time:
the default profile and `make demo` never start a JVM."""
