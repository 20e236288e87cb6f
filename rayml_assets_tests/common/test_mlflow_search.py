"""Tag filters against a real MLflow store (sqlite), with the values MLflow does not unescape."""

import pytest

from rayml_assets.lib.common.contract import MlflowSettings
from rayml_assets.lib.common.mlflow_search import tag_equals

AWKWARD = ["plain", "it's", "back\\slash", "C:\\dir\\it's", 'say "hi"', "100%_done"]


def test_each_value_matches_exactly_its_own_run(tmp_path):
    settings = MlflowSettings.local(tmp_path)
    client, experiment = settings.client(), settings.ensure_experiment()
    for value in AWKWARD:
        client.create_run(experiment, tags={"rayml.report_dir": value})
    for value in AWKWARD:
        found = client.search_runs([experiment], filter_string=tag_equals("rayml.report_dir", value))
        assert [run.data.tags["rayml.report_dir"] for run in found] == [value]


def test_a_value_with_both_quotes_is_refused():
    with pytest.raises(ValueError, match="both quote characters"):
        tag_equals("rayml.report_dir", "a'b\"c")
