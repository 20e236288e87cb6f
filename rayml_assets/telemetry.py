"""Switch off every phone-home channel of the stack before any of it is imported."""

import os

# Each library reads its switch at import or at start-up, so these are set as
# defaults: a user who really wants telemetry can still export the variable.
TELEMETRY_OFF = {
    "SENTRY_OPT_OUT": "1",  # fastdup's Sentry reporting
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}


def disable_telemetry() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
