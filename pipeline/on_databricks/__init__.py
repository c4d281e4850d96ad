"""Databricks: the `databricks-jobs` backend that submits a run without a DBFS root, credentials for a job's
children, and where a cluster's files go."""
