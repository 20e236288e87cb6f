"""The one daily partitioning shared by production predictions and the drift reports."""

from dagster import DailyPartitionsDefinition

# A day is a partition once it has ended (end_offset=0): today's folder is picked up after midnight UTC.
DAILY = DailyPartitionsDefinition(start_date="2026-01-01")
