"""A PyFlink batch table environment for tests that compare Flink SQL with DuckDB value by value."""

from __future__ import annotations

import sys


def batch_table_env(tmp_path, udfs: bool = True):
    """A batch ``TableEnvironment`` on the local mini-cluster: parallelism 1, UTC, the connector jars (Parquet)
    and, with ``udfs``, the project's Java functions (the jar the Flink jobs load)."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from featurestore.config import load_config
    from featurestore.devinfra.jars import connector_jars
    from featurestore.engines.flink.udf import udf_jar

    jars = connector_jars(load_config(tmp_path))
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(j.resolve().as_uri() for j in [*jars, *([udf_jar(jars)] if udfs else [])]))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", "1")
    return TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())
