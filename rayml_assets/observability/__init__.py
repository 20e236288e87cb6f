"""Observability: shipping pipeline and training logs to Azure Monitor.

``azure_monitor`` (the handler; no dagster, so the task scripts use it on a cluster) and
``dagster_logger`` (the Dagster run logger). Nothing is imported here, so that importing the
handler never pulls in dagster.
"""
