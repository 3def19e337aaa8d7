"""The web page in a real headless Chromium (Playwright): upload, modify, see results, click to refine.

Needs Debian's `chromium` at /usr/bin/chromium (Playwright never downloads a browser here); skips
without it. Screenshots go to $CIR_SCREENSHOT_DIR (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from test_service_support import catalog, tiny_encoder  # noqa: F401  (fixtures)

from opensearch_cir.service import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(app):
    """Run `app` with uvicorn in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("the service did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def server_url(catalog):
    yield from _serve(create_app(catalog.settings, client=catalog.client, encoder=catalog.encoder))


@pytest.fixture(scope="module")
def locked_server_url(catalog):
    settings = catalog.settings.replace(api_key="page-key")
    yield from _serve(create_app(settings, client=catalog.client, encoder=catalog.encoder))


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        browser.close()


def test_upload_modify_refine(page, server_url, catalog, tmp_path):
    shots = Path(os.environ.get("CIR_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url + "/")
    page.wait_for_function("document.getElementById('health').textContent.startsWith('ok')")

    # 1. reference image + modification
    query = catalog.scenes.queries[0]
    page.set_input_files("#file", str(catalog.scenes.image_path(query.reference)))
    page.wait_for_selector("#reference-preview:not([hidden])")
    page.fill("#text", query.text)
    page.click("#search")
    page.wait_for_selector("#results .card")
    cards = page.locator("#results .card")
    assert cards.count() >= 3
    assert page.locator("#results .card .caption").first.inner_text().strip()
    assert "·" in page.locator("#results .card .subscores").first.inner_text(), "explain scores shown"
    page.wait_for_function("[...document.querySelectorAll('#results .card img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(shots / "cir-page-results.png"), full_page=True)
    first_turn_ids = _result_ids(page)

    chip = page.locator("#results .card .chip", has_text="colours=").first  # a chip adds a filter ...
    chip.click()
    assert page.input_value("#filters") == "metadata." + chip.inner_text()
    assert "uploaded:" in page.locator("#reference-caption").inner_text(), "... and does not refine"
    page.fill("#filters", "")

    # 2. click a result (changing one's mind once): it becomes the reference; refine with a new modification
    cards.nth(0).click()
    chosen = cards.nth(1).get_attribute("data-id")
    cards.nth(1).click()
    assert "result:" in page.locator("#reference-caption").inner_text()
    assert page.locator("#history li").count() == 1
    page.fill("#text", "make it yellow")
    page.click("#search")
    page.wait_for_function(f"!document.querySelector('#results .card[data-id=\"{chosen}\"]')"
                           " && document.querySelectorAll('#history li').length === 2")
    assert _result_ids(page) != first_turn_ids
    assert page.locator("#history li input").nth(1).input_value() == "make it yellow"
    page.screenshot(path=str(shots / "cir-page-second-turn.png"), full_page=True)

    # 3. edit the first step in the history and re-run from it: later steps are dropped
    page.locator("#history li input").nth(0).fill("add a small blue circle")
    page.locator("#history li button").nth(0).click()
    page.wait_for_function("document.querySelectorAll('#history li').length === 1"
                           " && document.querySelector('#history li input').value === 'add a small blue circle'")
    page.wait_for_selector("#results .card")
    page.screenshot(path=str(shots / "cir-page-refined.png"), full_page=True)
    page.click("#start-over")
    assert page.locator("#results .card").count() == 0 and page.locator("#reference-preview").is_hidden()

    # 4. bad input shows the service's message instead of results
    page.fill("#text", "a red circle")
    page.fill("#filters", "no equals sign")
    page.click("#search")
    assert "field=value" in page.locator("#error").inner_text()
    page.fill("#filters", "metadata.colours=red")
    page.select_option("#strategy", "image_only")  # needs a reference image: the service says so
    page.click("#search")
    page.wait_for_function("document.getElementById('error').textContent.includes('needs a reference image')")
    page.select_option("#strategy", "")
    page.click("#search")
    page.wait_for_selector("#results .card")
    captions = page.locator("#results .card .caption").all_inner_texts()
    assert captions and all("red" in caption for caption in captions), "the filter applies"
    assert not errors, errors


def _result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results .card", "cards => cards.map(c => c.dataset.id)")


def test_api_key_entered_on_the_page(page, locked_server_url):
    page.goto(locked_server_url + "/")
    page.evaluate("localStorage.clear()")
    page.reload()
    page.fill("#text", "a red circle")
    page.click("#search")
    page.wait_for_selector("#error:not([hidden])")
    assert "X-API-Key" in page.locator("#error").inner_text()
    assert page.locator("#settings").get_attribute("open") is not None, "settings opened for the key"
    page.fill("#api-key", "page-key")
    page.locator("#api-key").dispatch_event("change")
    page.click("#search")
    page.wait_for_selector("#results .card")
    page.wait_for_function("[...document.querySelectorAll('#results .card img')]"
                           ".every(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)")
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def test_openapi_docs_render_offline(page, server_url):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(server_url + "/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() >= 5
    assert all(url.startswith(server_url) for url in requests), "no CDN: everything from the service"


def test_collection_grid_and_session_feedback(page, server_url, catalog, tmp_path):
    """The page opens on the collection (paged, filterable); a picked image starts a session whose
    turns stay visible; "not this one" excludes a result from the next turn, which the server records."""
    import json
    import urllib.request

    shots = Path(os.environ.get("CIR_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server_url + "/")
    page.wait_for_selector("#browse-grid .item")
    total = len(catalog.records)
    assert page.locator("#browse-grid .item").count() == min(24, total)
    assert f"{total} images" in page.locator("#browse-info").inner_text()
    first_page = page.eval_on_selector_all("#browse-grid .item", "items => items.map(i => i.dataset.id)")
    if total > 24:
        page.click("#browse-next")
        page.wait_for_function("document.getElementById('browse-info').textContent.includes('page 2')")
        assert not set(first_page) & set(page.eval_on_selector_all("#browse-grid .item", "items => items.map(i => i.dataset.id)"))
        page.click("#browse-prev")
        page.wait_for_function("document.getElementById('browse-info').textContent.includes('page 1')")
    page.fill("#browse-q", "circle")
    page.press("#browse-q", "Enter")
    # the info already read "page 1 of" before the words were applied: wait for the filtered grid itself
    page.wait_for_function("(() => { const items = [...document.querySelectorAll('#browse-grid .item div')];"
                           " return items.length > 0 && items.every(d => d.textContent.includes('circle')); })()")
    captions = page.locator("#browse-grid .item div").all_inner_texts()
    assert captions and all("circle" in caption for caption in captions), captions
    with_circle = page.locator("#browse-grid .item").count()
    page.fill("#filters", "metadata.colours=red")  # the search's field filters narrow the grid too
    page.locator("#filters").dispatch_event("change")
    page.wait_for_function(f"document.querySelectorAll('#browse-grid .item').length < {with_circle}")
    assert all("red" in t for t in page.locator("#browse-grid .item").evaluate_all("items => items.map(i => i.title)"))
    page.fill("#filters", "")
    page.locator("#filters").dispatch_event("change")
    page.wait_for_function(f"document.querySelectorAll('#browse-grid .item').length === {with_circle}")
    page.screenshot(path=str(shots / "cir-page-collection.png"), full_page=True)

    # pick a reference from the grid, search: turn 1
    picked = page.locator("#browse-grid .item").first
    picked_id = picked.get_attribute("data-id")
    picked.click()
    assert "collection:" in page.locator("#reference-caption").inner_text()
    page.fill("#text", "make it yellow")
    page.click("#search")
    page.wait_for_selector("#results .card")
    assert page.locator("#collection").get_attribute("open") is None, "the grid folds away for the results"
    shown = _result_ids(page)
    assert picked_id not in shown

    # "not this one" on the first result, "this one" on the second: turn 2
    page.locator("#results .card .reject").nth(0).click()
    assert "rejected" in page.locator("#results .card").nth(0).get_attribute("class")
    page.locator("#results .card .like").nth(1).click()
    assert "result:" in page.locator("#reference-caption").inner_text()
    page.fill("#text", "add a small blue circle")
    page.click("#search")
    page.wait_for_function("document.querySelectorAll('#history li .step').length === 2")
    second = _result_ids(page)
    assert shown[0] not in second and shown[1] not in second
    combined = page.locator("#history li .combined").nth(1).inner_text()
    assert "make it yellow, add a small blue circle" in combined and "1 excluded" in combined
    assert "2 turns" in page.locator("#session-info").inner_text()
    page.screenshot(path=str(shots / "cir-page-session.png"), full_page=True)

    session_id = page.evaluate("state.session.id")
    with urllib.request.urlopen(f"{server_url}/sessions/{session_id}") as response:
        record = json.load(response)
    assert [t["text"] for t in record["turns"]] == ["make it yellow", "add a small blue circle"]
    assert record["turns"][0]["reference_ids"] == [picked_id]
    assert record["turns"][1]["liked"] == [shown[1]] and record["turns"][1]["rejected"] == [shown[0]]
    assert not errors, errors
