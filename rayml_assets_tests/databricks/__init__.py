"""Contract tests of the Databricks compute against ``support/fake_databricks`` (marker ``contract``)."""
