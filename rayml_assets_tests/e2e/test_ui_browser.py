"""The Dagster UI of the real code location, in a real browser (Debian chromium driven by Playwright).

A code server, dagster-webserver and dagster-daemon run on 127.0.0.1 with a
temporary DAGSTER_HOME (deploy/dagster.yaml) and a tiny sample landing.
Screenshots go to test-artifacts/ui/.
"""

import re
import shutil

import pytest

from rayml_assets.sample import write_batches
from rayml_assets_tests.e2e.conftest import SHOTS, TIMEOUT_MS
from rayml_assets_tests.support.dagster_stack import DagsterStack, LOCATION, wait_for


ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
SENSOR_STATUS = """
query($name: String!) {
  sensorOrError(sensorSelector: {repositoryLocationName: "%s", repositoryName: "__repository__", sensorName: $name}) {
    ... on Sensor { sensorState { status } }
  }
}""" % LOCATION
# Node boxes and edge paths as drawn in the asset graph's SVG.
GRAPH_GEOMETRY = """() => {
  const nodes = {};
  for (const box of document.querySelectorAll('foreignObject')) {
    const name = box.querySelector('[class*="assetName"]');
    if (name) nodes[name.textContent.trim()] = ['x', 'y', 'width', 'height'].map(a => +box.getAttribute(a));
  }
  const edges = [...document.querySelectorAll('path[marker-end]')].map(p => {
    const n = (p.getAttribute('d').match(/-?[0-9.]+/g) || []).map(Number);
    return [n[0], n[1], n[n.length - 2], n[n.length - 1]];
  });
  return {nodes, edges};
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_stack")
    home = root / "rayml_home"
    write_batches(home / "landing" / "images", limit=60)  # the local profile's landing_uri
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with DagsterStack(root, "rayml_assets.definitions", home) as running:
        # The daemon starts later in the test, once the landing sensor is switched off in the UI:
        # otherwise it would ingest the landing itself, racing the run the test launches.
        yield running.start(daemon=False, timeout=420)


@pytest.fixture
def page(browser, stack):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    # A fresh instance greets with a newsletter dialog; skip it whenever it shows.
    skip = page.get_by_role("button", name="Skip")
    page.add_locator_handler(page.get_by_text("Join the Dagster community"), lambda: skip.click())
    yield page
    page.close()


def _sensor_status(stack, name: str) -> str:
    return stack.graphql(SENSOR_STATUS, name=name)["sensorOrError"]["sensorState"]["status"]


def _edges_drawn(geometry: dict, upstream: str, downstream: str) -> bool:
    (ux, uy, uw, uh), (dx, dy, _, dh) = geometry["nodes"][upstream], geometry["nodes"][downstream]
    return any(
        abs(x0 - (ux + uw)) < 3 and abs(y0 - (uy + uh / 2)) < 3 and abs(x1 - dx) < 15 and abs(y1 - (dy + dh / 2)) < 3
        for x0, y0, x1, y1 in geometry["edges"]
    )


def test_sensors_page_graph_and_materialize_in_the_browser(stack, page):
    from playwright.sync_api import expect

    # 1. Automation: every sensor and the schedule, with the sensors on by default.
    page.goto(f"{stack.url}/automation")
    sensors = ("landing_sensor", "production_sensor", "feedback_sensor", "drift_retrain_sensor")
    for name in (*sensors, "daily_monitoring_schedule"):
        expect(page.get_by_role("link", name=re.compile(name))).to_be_visible()
    assert _sensor_status(stack, "landing_sensor") == "RUNNING"
    page.screenshot(path=SHOTS / "automation.png")
    row = page.locator("div").filter(has=page.get_by_role("link", name=re.compile("landing_sensor"))).filter(
        has=page.get_by_role("checkbox")
    ).last
    switch = row.get_by_role("checkbox").last  # the on/off switch (the first checkbox selects the row)
    expect(switch).to_be_checked()
    switch.locator("xpath=..").click()  # the input itself is drawn over by the switch's label
    wait_for("landing_sensor to stop", lambda: _sensor_status(stack, "landing_sensor") == "STOPPED", 60)
    stack.start_daemon()

    # 2. The asset graph: every defined asset, and every lineage edge drawn between the right boxes.
    graph = stack.graphql(ASSET_GRAPH)["assetNodes"]
    keys = {"/".join(n["assetKey"]["path"]) for n in graph}
    edges = {("/".join(d["path"]), "/".join(n["assetKey"]["path"])) for n in graph for d in n["dependencyKeys"]}
    assert ("raw_images", "cleaned_images") in edges and {"raw_images", "cleaned_images"} <= keys
    page.goto(f"{stack.url}/asset-groups")
    expect(page.get_by_text("dataset").first).to_be_visible()
    page.mouse.click(900, 700)
    page.keyboard.press("Alt+e")  # "Expand all groups" in the graph's settings menu

    def drawn() -> dict | None:
        geometry = page.evaluate(GRAPH_GEOMETRY)
        return geometry if keys <= set(geometry["nodes"]) and len(geometry["edges"]) >= len(edges) else None

    geometry = wait_for("every asset box and edge", drawn, 60, on_timeout=lambda: page.evaluate(GRAPH_GEOMETRY))
    page.screenshot(path=SHOTS / "asset_graph.png")
    missing = sorted(f"{u} -> {d}" for u, d in edges if not _edges_drawn(geometry, u, d))
    assert not missing, f"edges not drawn: {missing}; geometry: {geometry}"

    # 3. Materialize raw_images from its page (launchpad: in-process execution, so the run imports the
    #    code location once rather than once per step) and follow the run to success.
    page.goto(f"{stack.url}/assets/raw_images")
    expect(page.get_by_role("button", name="materialization Materialize", exact=True)).to_be_enabled()
    page.get_by_role("button", name="arrow_drop_down", exact=True).first.click()
    page.get_by_role("menuitem", name=re.compile("Open launchpad")).click()
    editor = page.locator(".CodeMirror").first
    expect(editor).to_be_visible()
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("execution:\n  config:\n    in_process: {}\n")
    expect(page.get_by_text("No errors")).to_be_visible()
    page.screenshot(path=SHOTS / "launchpad.png")
    page.get_by_role("dialog").get_by_role("button", name=re.compile("Materialize")).click()

    run = wait_for("the raw_images run to be created", lambda: stack.runs(), 60)[0]
    page.goto(f"{stack.url}/runs/{run['runId']}")
    finished = stack.wait_for_runs(1, 420)[0]
    assert finished["runId"] == run["runId"]
    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()  # the run log, as the UI shows it
    page.screenshot(path=SHOTS / "run.png")

    page.goto(f"{stack.url}/assets/raw_images")
    expect(page.get_by_text("rows_added")).to_be_visible()
    page.screenshot(path=SHOTS / "raw_images.png")
