"""The built site in a real headless Chromium: loads cleanly, matches results.json, reads well at 1,280 and
1,400 px (no wrapped numbers, no table wider than the page, no cut headers), sorts, filters, images load.

Screenshots go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.leaderboard.browser import chromium, console_errors
from tests.leaderboard.conftest import HOSTILE_NAME, MINI

pytestmark = pytest.mark.browser

LAYOUT_JS = """
const out = {tables: [], wrapped: [], cutHeaders: []};
document.querySelectorAll('table.board').forEach(t => {
  const box = t.parentElement;
  out.tables.push([t.id, t.getBoundingClientRect().width, box.clientWidth, document.documentElement.clientWidth]);
  t.querySelectorAll('td.num, td.acc').forEach(td => {
    const lh = parseFloat(getComputedStyle(td).lineHeight) || 16;
    const range = document.createRange();
    range.selectNodeContents(td);
    if (range.getBoundingClientRect().height > 1.6 * lh) out.wrapped.push([t.id, td.textContent]);
  });
  t.querySelectorAll('thead th').forEach(th => {
    if (th.scrollWidth > th.clientWidth + 1) out.cutHeaders.push([t.id, th.textContent]);
  });
});
out.pageWidth = document.documentElement.scrollWidth;
out.viewWidth = document.documentElement.clientWidth;
return out;
"""


def full_page_screenshot(driver, path: Path, width: int) -> None:  # noqa: ANN001
    """Resize the window to the whole page and save a PNG of it."""
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, min(int(height) + 140, 20000))
    driver.save_screenshot(str(path))


def _expected(results: Path, dataset: str) -> dict[str, dict]:
    """Full-user runs of ``dataset`` by method name (the noisy second config is left out)."""
    out = {}
    for path in sorted((results / dataset).rglob("results.json")):
        data = json.loads(path.read_text())
        full = data["dataset"]["shard"] is None and data["dataset"]["n_users"] == data["dataset"]["manifest"][
            "counts"]["users"]
        if full and data["method"]["config"].get("noise", 0) == 0:
            out[data["method"]["name"]] = data
    return out


def _table_rows(driver, table_id: str) -> list[dict]:  # noqa: ANN001
    return driver.execute_script(
        """
        const rows = document.querySelectorAll('#' + CSS.escape(arguments[0]) + ' tbody tr');
        return Array.from(rows).filter(r => !r.hidden).map(r => ({
            method: r.cells[1].querySelector('a').textContent,
            cfg: (r.cells[1].querySelector('.cfg') || {}).textContent || '',
            model: (r.cells[3].querySelector('.model') || {}).textContent || '',
            modelTitle: (r.cells[3].querySelector('.model') || {title: ''}).title,
            acc: r.cells[4].getAttribute('data-v'),
            accText: r.cells[4].textContent,
            userMean: r.cells[5].getAttribute('data-v'),
            counts: r.cells[7].textContent,
            rank: r.cells[0].textContent,
            cls: r.className}));
        """, table_id)


def _table_id(driver, dataset: str) -> str:  # noqa: ANN001
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('section.dataset:not(.subset) table.board'))"
        ".map(t => t.id).find(i => i.startsWith('table-' + arguments[0] + '-'));", dataset)


def test_site_in_chromium(standard_site: tuple[Path, Path], artifacts_dir: Path) -> None:
    results_dir, out = standard_site
    from selenium.webdriver.common.by import By

    with chromium(width=1400, height=1600) as driver:
        driver.get((out / "index.html").resolve().as_uri())
        assert driver.title == "PersonalRewardBench leaderboard"
        assert console_errors(driver) == []
        # this board's own runs come before the papers' numbers
        order = driver.execute_script("return Array.from(document.querySelectorAll('main section[id]')).map(s => s.id);")
        assert order.index("published") > max(i for i, s in enumerate(order) if s.startswith(MINI))

        for ds in (MINI, "synthetic-sample"):
            expected = _expected(results_dir, ds)
            table = _table_id(driver, ds)
            rows = [r for r in _table_rows(driver, table) if not r["cfg"] or r["method"] != "personal-length"
                    or float(r["acc"] or 0) == expected["personal-length"]["scores"]["accuracy"]]
            assert sorted({r["method"] for r in rows}) == sorted(expected)
            for r in rows:
                data = expected[r["method"]]
                assert r["counts"] == f"{data['dataset']['n_users']} · {data['scores']['n_pairs'] if data['scores'] else '—'}" \
                                      f" · {data['scores']['n_judgments'] if data['scores'] else '—'}"
                if data["status"] == "ok":
                    assert float(r["acc"]) == pytest.approx(data["scores"]["accuracy"], abs=1e-9)
                    assert f"{100 * data['scores']['accuracy']:.1f}" in r["accText"]
                    lo, hi = data["scores"]["accuracy_ci95"]
                    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in r["accText"]
                    assert float(r["userMean"]) == pytest.approx(data["scores"]["user_mean_accuracy"], abs=1e-9)
                else:
                    assert r["accText"].startswith("not applicable") and r["rank"] == ""
                if data["method"]["base_model"]:  # short name shown, full identity on hover
                    assert r["model"] == "SmolLM2-135M-Instruct"
                    assert data["method"]["base_model"] in r["modelTitle"]

        # every figure is a loaded image
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);")
        assert len(imgs) >= 6 and all(ok for _, ok in imgs), imgs

        # sorting by a column reorders rows; clicking again reverses
        table = _table_id(driver, MINI)
        th = driver.find_elements(By.CSS_SELECTOR, f"#{table} thead th")[4]
        th.click()
        asc = [r["acc"] for r in _table_rows(driver, table)]
        numeric = [float(v) for v in asc if v]
        assert numeric == sorted(numeric) and asc[-1] == ""  # missing (not applicable) last
        th.click()
        desc = [float(v) for v in (r["acc"] for r in _table_rows(driver, table)) if v]
        assert desc == sorted(desc, reverse=True)

        # filtering hides rows that do not match
        box = driver.find_element(By.CSS_SELECTOR, f"section#{table[len('table-'):]} input.filter")
        box.send_keys("random")
        assert [r["method"] for r in _table_rows(driver, table)] == ["random"]
        box.clear()
        box.send_keys(" ")  # clear() does not fire input events
        assert console_errors(driver) == []

        # a method page: artifacts shown as text, per-user table matches results.json, full model identity
        driver.get((out / "methods" / "personal-length.html").resolve().as_uri())
        assert console_errors(driver) == []
        assert driver.find_elements(By.CSS_SELECTOR, "pre.persona b") == []
        page_text = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
        assert "Prefers long answers & <b>bold</b> claims (user00)" in page_text
        assert "HuggingFaceTB/SmolLM2-135M-Instruct@9d1c2b6e0f3a4c5d8e7f6a5b4c3d2e1f00112233" in page_text
        users = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.peruser'))[0].tBodies[0].rows.length;")
        assert users == 16
        full_page_screenshot(driver, artifacts_dir / "leaderboard-method-1400.png", 1400)


@pytest.mark.parametrize("width", [1280, 1400])
def test_layout_fits_without_wrapping_numbers(standard_site: tuple[Path, Path], artifacts_dir: Path,
                                              width: int) -> None:
    with chromium(width=width, height=3200) as driver:
        driver.get((standard_site[1] / "index.html").resolve().as_uri())
        got = driver.execute_script(LAYOUT_JS)
        full_page_screenshot(driver, artifacts_dir / f"leaderboard-{width}.png", width)
    assert got["pageWidth"] <= got["viewWidth"], got  # no sideways scrolling of the page
    ranked = [t for t in got["tables"] if not t[0].startswith("table-published")]
    for table_id, table_w, box_w, _ in ranked:
        assert table_w <= box_w + 1, (table_id, table_w, box_w)  # the board's tables fit the page
    assert got["wrapped"] == [], got["wrapped"]  # no number or interval broken over two lines
    assert got["cutHeaders"] == [], got["cutHeaders"]


def test_site_readable_without_javascript(standard_site: tuple[Path, Path]) -> None:
    with chromium(javascript=False) as driver:
        driver.get((standard_site[1] / "index.html").resolve().as_uri())
        table = _table_id(driver, MINI)
        n_rows = driver.execute_script(f"return document.querySelectorAll('#{table} tbody tr').length;")
        assert n_rows == 6
        assert driver.execute_script("return document.querySelectorAll('input.filter').length;") == 0


def test_hostile_names_do_not_run(hostile_site: tuple[Path, Path]) -> None:
    site = hostile_site[1]
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        pages = [site / "index.html"] + sorted((site / "methods").glob("*.html"))
        for p in pages:
            driver.get(p.resolve().as_uri())
            with pytest.raises(NoAlertPresentException):
                driver.switch_to.alert.text  # noqa: B018 - raises when no alert opened
            assert driver.find_elements(By.CSS_SELECTOR, "img[src='x']") == []
            hrefs = driver.execute_script("return Array.from(document.links).map(a => a.protocol);")
            assert set(hrefs) <= {"file:", "http:", "https:"}
        driver.get((site / "index.html").resolve().as_uri())
        assert HOSTILE_NAME in [r["method"] for r in _table_rows(driver, _table_id(driver, MINI))]
