"""Pictures in the Dagster UI: a materialized registered_model and data_drift_report show their plots inline.

The chain is materialized in-process into the stack's own DAGSTER_HOME (tiny data, one short
trial), then the webserver serves that instance to a real browser (Debian chromium), which must
load every inline image with a non-zero natural size. Screenshots go to test-artifacts/ui/.
"""

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, materialize

from rayml_assets.definitions import resources_for
from rayml_assets.defs.dataset import assets as dataset_assets
from rayml_assets.defs.monitoring import assets as monitoring_assets
from rayml_assets.defs.training import assets as training_assets
from rayml_assets.resources.storage import DatasetPolicy
from rayml_assets.sample import write_batches
from rayml_assets.sample_stream import write_stream
from rayml_assets.settings import load_profile
from rayml_assets_tests.conftest import TAXONOMY
from rayml_assets_tests.e2e.conftest import SHOTS, TIMEOUT_MS
from rayml_assets_tests.support.dagster_stack import DagsterStack, wait_for

DAY = "2026-01-01"
ONE_TRIAL = {
    "search_space": {"model": "small_cnn", "lr": 0.1, "momentum": 0.9, "batch_size": 32},
    "num_samples": 1, "max_epochs": 2, "scheduler": {"type": "fifo"}, "num_workers": 1, "cpus_per_worker": 1,
}
PAGES = {  # asset page -> what the screenshot is called
    "cleaned_images": "cleaned_images",
    "tuned_model": "tuned_model",
    "registered_model": "registered_model",
    "data_drift_report": "data_drift_report",  # its one partition, DAY, is the latest materialization
    "shap_report": "shap_report",
}
# Every inline image of the open preview: (loaded, natural width, natural height).
IMAGES = """() => [...document.querySelectorAll('[role="dialog"] img[src^="data:image/png"]')]
  .map(i => [i.complete, i.naturalWidth, i.naturalHeight])"""


def _materialize_chain(home: Path, dagster_home: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYML_HOME", str(home))
        profile = load_profile("local")
        write_batches(Path(profile.landing_uri), batches=8, only_batch=0)
        write_stream(profile.production_landing_uri, profile.feedback_landing_uri, days=1, per_day=60)
        resources = {**resources_for(profile), "dataset_policy": DatasetPolicy(taxonomy=list(TAXONOMY), min_train_images_per_class=3)}
        config = {"ops": {"tuned_model": {"config": {"tuning_yaml": yaml.safe_dump(ONE_TRIAL)}}}}
        chain = [dataset_assets.raw_images, dataset_assets.cleaned_images, training_assets.tuned_model,
                 training_assets.registered_model]
        with DagsterInstance.from_config(str(dagster_home)) as instance:
            trained = materialize(chain, resources=resources, instance=instance, run_config=config, raise_on_error=False)
            registered = trained.asset_materializations_for_node("registered_model")
            assert registered, "the chain registered no model"
            # A one-trial model does not beat the SVC baseline, so the gate keeps it from the alias; the
            # pictures need a champion: set it by hand, as an operator overriding the gate would.
            version = registered[0].metadata["model_version"].value
            store = resources["mlflow_store"]
            store.settings().client().set_registered_model_alias(store.model_name, "champion", version)
            assert materialize([monitoring_assets.shap_report], resources=resources, instance=instance).success
            monitoring = [monitoring_assets.predictions, monitoring_assets.data_drift_report]
            assert materialize(monitoring, resources=resources, instance=instance, partition_key=DAY).success


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_pictures")
    home = root / "rayml_home"
    with DagsterStack(root, "rayml_assets.definitions", home) as running:
        _materialize_chain(home, running.home)
        yield running.start(daemon=False, timeout=420)


@pytest.mark.parametrize("page_path", list(PAGES))
def test_asset_pages_render_their_pictures(stack, browser, page_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    skip = page.get_by_role("button", name="Skip")  # a fresh instance greets with a newsletter dialog
    page.add_locator_handler(page.get_by_text("Join the Dagster community"), lambda: skip.click())
    try:
        page.goto(f"{stack.url}/assets/{page_path}")
        # The latest materialization's metadata table: its preview row opens the Markdown with the pictures.
        page.locator("tr").filter(has=page.get_by_text("preview", exact=True)).get_by_text("Show Markdown").click()
        images = wait_for(
            f"inline images on {page_path}",
            lambda: [i for i in page.evaluate(IMAGES) if i[0] and i[1] > 0 and i[2] > 0],
            60,
            on_timeout=lambda: page.inner_text("body")[:3000],
        )
        assert images, f"no inline picture rendered on {page_path}"
        # The dialog fades in: fast-forward CSS transitions so the shot shows it, not a translucent overlay.
        page.screenshot(path=SHOTS / f"{PAGES[page_path]}.png", animations="disabled")
    finally:
        page.close()
