import warnings

from dagster import BetaWarning

# BackfillPolicy is beta in Dagster 1.13; we rely on it knowingly (single-run range backfills).
warnings.filterwarnings("ignore", category=BetaWarning)
