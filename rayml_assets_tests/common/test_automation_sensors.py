"""Sensors and the schedule, evaluated in-process with build_sensor_context and stored cursors."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    SensorResult,
    asset,
    build_schedule_context,
    build_sensor_context,
)

from rayml_assets.defs.common.file_sensor import MAX_WAIT_TICKS
from rayml_assets.defs.dataset import jobs as dataset_jobs
from rayml_assets.defs.dataset.sensors import landing_sensor
from rayml_assets.defs.monitoring import jobs as monitoring_jobs
from rayml_assets.defs.monitoring.sensors import feedback_sensor, production_sensor
from rayml_assets.defs.training import jobs as training_jobs
from rayml_assets.defs.training.sensors import drift_retrain_sensor

# The sensors, jobs and schedule of every domain, as the code location loads them.
AUTOMATION = Definitions(
    jobs=[
        dataset_jobs.ingest_landing_job,
        training_jobs.retrain_job,
        monitoring_jobs.production_job,
        monitoring_jobs.feedback_job,
        monitoring_jobs.daily_monitoring_job,
    ],
    sensors=[landing_sensor, production_sensor, feedback_sensor, drift_retrain_sensor],
    schedules=[monitoring_jobs.daily_monitoring_schedule],
)
from rayml_assets.defs.common.partitions import DAILY
from rayml_assets.resources.storage import LandingResource
from rayml_assets.sample import write_batches


@pytest.fixture
def landing(profile, monkeypatch) -> LandingResource:
    monkeypatch.setenv("RAYML_SENSOR_SETTLE_SECONDS", "0")  # files written by the test are complete
    return LandingResource(
        images_uri=profile.landing_uri,
        production_uri=profile.production_landing_uri,
        feedback_uri=profile.feedback_landing_uri,
    )


def tick(sensor, instance, cursor=None, landing=None) -> SensorResult:
    resources = {"landing": landing} if landing else None
    result = sensor(build_sensor_context(instance=instance, cursor=cursor, resources=resources))
    json.loads(result.cursor)  # always a JSON cursor, also on skips
    return result


def two_ticks(sensor, instance, cursor=None, landing=None) -> SensorResult:
    """New files are pending after the tick that finds them and requested after the next, quiet one."""
    found = tick(sensor, instance, cursor, landing)
    assert not found.run_requests, "requested before a quiet tick"
    return tick(sensor, instance, found.cursor, landing)


def test_landing_sensor_requests_each_batch_once(instance, landing):
    images = Path(landing.images_uri)
    first = tick(landing_sensor, instance, landing=landing)
    assert first.skip_reason and "does not exist" in first.skip_reason.skip_message

    write_batches(images, batches=3, only_batch=0, limit=60)
    found = tick(landing_sensor, instance, first.cursor, landing)
    assert "30 new files" in found.skip_reason.skip_message
    batch0 = tick(landing_sensor, instance, found.cursor, landing)
    [request] = batch0.run_requests
    assert request.tags["rayml/new_files"] == "30"
    replay = tick(landing_sensor, instance, found.cursor, landing)
    assert replay.run_requests[0].run_key == request.run_key, "a tick evaluated again asks for the same run"

    quiet = tick(landing_sensor, instance, batch0.cursor, landing)
    assert not quiet.run_requests and "no new files" in quiet.skip_reason.skip_message

    write_batches(images, batches=3, only_batch=1, limit=60)
    [again] = two_ticks(landing_sensor, instance, quiet.cursor, landing).run_requests
    assert again.run_key != request.run_key and again.tags["rayml/new_files"] == "20"


def test_landing_sensor_waits_for_the_running_ingest_and_keeps_the_files(instance, landing):
    write_batches(Path(landing.images_uri), batches=3, only_batch=0, limit=30)
    instance.add_run(DagsterRun(job_name="ingest_landing_job", run_id="r" * 32, status=DagsterRunStatus.STARTED))
    waiting = two_ticks(landing_sensor, instance, landing=landing)
    assert not waiting.run_requests and "in progress" in waiting.skip_reason.skip_message
    assert json.loads(waiting.cursor)["pending"][""]["count"] == 20

    instance.report_run_canceled(instance.get_run_by_id("r" * 32))
    [request] = tick(landing_sensor, instance, waiting.cursor, landing).run_requests
    assert request.tags["rayml/new_files"] == "20"


def test_landing_sensor_requests_before_a_long_scan_catches_up(instance, landing, monkeypatch):
    """raw_images ingests the whole landing, so a big re-read need not finish before the first request."""
    monkeypatch.setenv("RAYML_SENSOR_LIMIT", "3")  # 30 files in 11 folders: a scan of more than 10 ticks
    write_batches(Path(landing.images_uri), limit=20)
    cursor, first_found, ticks = None, None, 0
    while True:
        ticks += 1
        result = tick(landing_sensor, instance, cursor, landing)
        cursor = result.cursor
        if result.run_requests:
            break
        if first_found is None and json.loads(cursor)["pending"]:
            first_found = ticks
        assert ticks < 30, "no request"
    assert ticks - first_found <= MAX_WAIT_TICKS + 1, "the request waited for the whole scan"
    first = int(result.run_requests[0].tags["rayml/new_files"])
    assert first < 30, "requested before every file was found"
    rest = 0
    for _ in range(30):  # the files found later are requested too (that run finds them ingested already)
        result = tick(landing_sensor, instance, cursor, landing)
        cursor = result.cursor
        rest += sum(int(r.tags["rayml/new_files"]) for r in result.run_requests)
    assert first + rest == 30, "every file is in exactly one request"


def _day_folder(root: str, day: str, n: int = 2) -> None:
    folder = Path(root, day)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"img_{i}.png").write_bytes(f"{day}-{i}".encode())


def test_production_sensor_requests_ended_days_and_ignores_malformed_folders(instance, landing, capfd):
    today = datetime.now(timezone.utc).date().isoformat()
    for day in ("2026-01-03", "2026-01-04", today, "2026-13-40", "latest", "2025-12-31"):
        _day_folder(landing.production_uri, day)
    Path(landing.production_uri, "2026-01-04", "notes.txt").write_text("not an image")
    result = two_ticks(production_sensor, instance, landing=landing)
    requested = {r.partition_key: r.tags["rayml/new_files"] for r in result.run_requests}
    assert requested == {"2026-01-03": "2", "2026-01-04": "2"}
    warning = capfd.readouterr().err  # the sensor's context.log
    for problem in ("'latest' is not a YYYY-MM-DD day", "'2026-13-40'", "before the first partition"):
        assert problem in warning
    assert list(json.loads(result.cursor)["pending"]) == [today], "today is not a partition until it ends"

    quiet = tick(production_sensor, instance, result.cursor, landing)
    assert not quiet.run_requests and f"day {today} has not ended" in quiet.skip_reason.skip_message

    Path(landing.production_uri, "junk").mkdir()
    Path(landing.production_uri, "junk", "x.png").write_bytes(b"x")
    only_junk = tick(production_sensor, instance, quiet.cursor, landing)
    assert not only_junk.run_requests and "'junk' is not a YYYY-MM-DD day" in only_junk.skip_reason.skip_message

    Path(landing.production_uri, "2026-01-03", "late.png").write_bytes(b"late")  # a late image for a past day
    [late] = two_ticks(production_sensor, instance, only_junk.cursor, landing).run_requests
    assert late.partition_key == "2026-01-03" and late.tags["rayml/new_files"] == "1"
    assert late.run_key != result.run_requests[0].run_key


def test_feedback_sensor_adds_predictions_only_when_missing(instance, landing):
    feedback = Path(landing.feedback_uri)
    feedback.mkdir(parents=True)
    (feedback / "2026-01-03.csv").write_text("image_id,true_label,observed_at\n")
    (feedback / "2026-01-04.csv").write_text("image_id,true_label,observed_at\n")
    (feedback / "readme.txt").write_text("x")
    instance.report_runless_asset_event(AssetMaterialization("predictions", partition="2026-01-04"))
    result = two_ticks(feedback_sensor, instance, landing=landing)
    selections = {r.partition_key: sorted(k.to_user_string() for k in r.asset_selection) for r in result.run_requests}
    assert selections == {"2026-01-03": ["model_drift_report", "predictions"], "2026-01-04": ["model_drift_report"]}


def _drift(instance, day: str, is_drift: bool) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization("data_drift_report", partition=day, metadata={"is_drift": is_drift, "p_value": 0.01})
    )


def test_drift_sensor_retrains_after_k_consecutive_drifted_days_once(instance, monkeypatch):
    _drift(instance, "2026-01-02", True)
    _drift(instance, "2026-01-03", False)
    first = tick(drift_retrain_sensor, instance)
    assert not first.run_requests

    _drift(instance, "2026-01-03", True)  # a re-run of the day now confirms drift
    _drift(instance, "2026-01-05", True)  # not consecutive with it
    [request] = tick(drift_retrain_sensor, instance, first.cursor).run_requests
    assert request.tags == {"rayml/retrain_reason": "data_drift", "rayml/drift_partitions": "2026-01-02,2026-01-03"}
    cursor = tick(drift_retrain_sensor, instance, first.cursor).cursor

    _drift(instance, "2026-01-04", True)  # joins 02-03 and 05 into one episode: no second retrain
    _drift(instance, "2026-01-06", True)
    cursor = tick(drift_retrain_sensor, instance, cursor)
    assert not cursor.run_requests
    _drift(instance, "2026-01-07", False)
    _drift(instance, "2026-01-08", True)
    _drift(instance, "2026-01-09", True)  # a clean day in between: a new episode
    [second] = tick(drift_retrain_sensor, instance, cursor.cursor).run_requests
    assert second.tags["rayml/drift_partitions"] == "2026-01-08,2026-01-09"
    cursor = tick(drift_retrain_sensor, instance, cursor.cursor).cursor

    monkeypatch.setenv("RAYML_DRIFT_RETRAIN_DAYS", "3")
    for day in ("2026-02-01", "2026-02-02"):
        _drift(instance, day, True)
    assert not tick(drift_retrain_sensor, instance, cursor).run_requests
    _drift(instance, "2026-02-03", True)
    [three] = tick(drift_retrain_sensor, instance, cursor).run_requests
    assert three.tags["rayml/drift_partitions"] == "2026-02-01,2026-02-02,2026-02-03"
    assert three.run_key == "retrain:data_drift:2026-02-01:2026-02-03"


def test_automation_resolves_against_the_contracted_assets():
    """The monitoring side's jobs and schedule, against stand-ins with the contract's keys and partitions."""

    @asset(partitions_def=DAILY)
    def predictions(): ...

    @asset(partitions_def=DAILY, deps=[predictions])
    def data_drift_report(): ...

    @asset(partitions_def=DAILY, deps=[predictions])
    def model_drift_report(): ...

    @asset
    def raw_images(): ...

    @asset(deps=[raw_images])
    def cleaned_images(): ...

    @asset(deps=[cleaned_images])
    def tuned_model(): ...

    @asset(deps=[tuned_model])
    def registered_model(): ...

    @asset(deps=[registered_model])
    def champion_model(): ...

    stand_ins = [predictions, data_drift_report, model_drift_report, raw_images, cleaned_images, tuned_model,
                 registered_model, champion_model]
    repo = Definitions.merge(Definitions(assets=stand_ins), AUTOMATION).get_repository_def()
    assert {s.name: s.default_status for s in repo.sensor_defs} == dict.fromkeys(
        ["landing_sensor", "production_sensor", "feedback_sensor", "drift_retrain_sensor"], DefaultSensorStatus.RUNNING
    )
    jobs = {
        j.name: sorted(k.to_user_string() for k in j.asset_layer.executable_asset_keys) for j in repo.get_all_jobs()
    }
    assert jobs["retrain_job"] == ["champion_model", "cleaned_images", "registered_model", "tuned_model"]
    assert jobs["daily_monitoring_job"] == ["data_drift_report", "model_drift_report", "predictions"]
    assert repo.get_job("production_job").partitions_def == DAILY

    schedule = repo.get_schedule_def("daily_monitoring_schedule")
    at = datetime(2026, 1, 6, 2, 0, tzinfo=timezone.utc)
    [request] = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=at)).run_requests
    assert request.partition_key == (at - timedelta(days=1)).date().isoformat()


def test_sensors_observe_their_landing_so_the_graph_starts_where_data_enters(instance, landing):
    write_batches(Path(landing.images_uri), batches=3, only_batch=0, limit=30)
    found = tick(landing_sensor, instance, landing=landing)
    [seen] = found.asset_events
    assert seen.asset_key.to_user_string() == "image_landing"
    assert seen.metadata["files_found"].value == 20 and seen.metadata["files_pending"].value == 20
    assert seen.metadata["newest_file"].value.endswith(".png")
    assert not tick(landing_sensor, instance, found.cursor, landing).asset_events  # nothing new: no observation

    for day in ("2026-01-03", "2026-01-04"):
        _day_folder(landing.production_uri, day)
    [day_seen] = tick(production_sensor, instance, landing=landing).asset_events
    assert day_seen.asset_key.to_user_string() == "production_landing"
    assert day_seen.metadata["newest_day"].value == "2026-01-04"
