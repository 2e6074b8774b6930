"""The built site in a real headless Chromium: loads cleanly, matches results.json, sorts, filters, images load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.leaderboard.browser import chromium, console_errors
from tests.leaderboard.conftest import HOSTILE_NAME

pytestmark = pytest.mark.browser


def _expected(results: Path, dataset: str) -> dict[str, dict]:
    out = {}
    for path in sorted((results / dataset).rglob("results.json")):
        data = json.loads(path.read_text())
        out[data["method"]["name"]] = data
    return out


def _table_rows(driver, table_id: str) -> list[dict]:  # noqa: ANN001
    return driver.execute_script(
        """
        const rows = document.querySelectorAll('#' + CSS.escape(arguments[0]) + ' tbody tr');
        return Array.from(rows).filter(r => !r.hidden).map(r => ({
            method: r.cells[1].querySelector('a').textContent,
            acc: r.cells[4].getAttribute('data-v'),
            accText: r.cells[4].textContent,
            userMean: r.cells[5].getAttribute('data-v'),
            rank: r.cells[0].textContent,
            cls: r.className}));
        """, table_id)


def test_site_in_chromium(standard_site: tuple[Path, Path], artifacts_dir: Path) -> None:
    results_dir, out = standard_site
    from selenium.webdriver.common.by import By

    with chromium() as driver:
        driver.get((out / "index.html").resolve().as_uri())
        assert driver.title == "PersonalRewardBench leaderboard"
        assert console_errors(driver) == []
        driver.save_screenshot(str(artifacts_dir / "leaderboard.png"))

        for ds in ("chatbot_arena", "synthetic-sample"):
            expected = _expected(results_dir, ds)
            rows = _table_rows(driver, f"table-{ds}")
            assert sorted(r["method"] for r in rows) == sorted(expected)
            ok = sorted((d["scores"]["accuracy"], m) for m, d in expected.items() if d["status"] == "ok")[::-1]
            assert [r["method"] for r in rows[: len(ok)]] == [m for _, m in ok]  # best first
            for r in rows:
                data = expected[r["method"]]
                if data["status"] == "ok":
                    assert float(r["acc"]) == pytest.approx(data["scores"]["accuracy"], abs=1e-9)
                    assert f"{100 * data['scores']['accuracy']:.1f}" in r["accText"]
                    lo, hi = data["scores"]["accuracy_ci95"]
                    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in r["accText"]
                    assert float(r["userMean"]) == pytest.approx(data["scores"]["user_mean_accuracy"], abs=1e-9)
                else:
                    assert r["accText"].startswith("not applicable") and r["rank"] == ""
            # tie marks follow from the CIs in results.json
            leader = expected[rows[0]["method"]]["scores"]["accuracy_ci95"]
            for r in rows[1: len(ok)]:
                ci = expected[r["method"]]["scores"]["accuracy_ci95"]
                assert ("tied" in r["cls"].split()) == (ci[1] >= leader[0]), r

        # every figure is a loaded image, and the per-dataset figures are there
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]);")
        assert len(imgs) == 8 and all(ok for _, ok in imgs), imgs
        assert {src for src, _ in imgs} == {f"plots/{ds}-{k}.png" for ds in ("chatbot_arena", "synthetic-sample")
                                            for k in ("accuracy", "per-user", "history", "cost")}

        # sorting by a column reorders rows; clicking again reverses
        th = driver.find_elements(By.CSS_SELECTOR, "#table-chatbot_arena thead th")[4]
        th.click()
        asc = [r["acc"] for r in _table_rows(driver, "table-chatbot_arena")]
        numeric = [float(v) for v in asc if v]
        assert numeric == sorted(numeric) and asc[-1] == ""  # missing (not applicable) last
        th.click()
        desc = [float(v) for v in (r["acc"] for r in _table_rows(driver, "table-chatbot_arena")) if v]
        assert desc == sorted(desc, reverse=True)
        driver.find_elements(By.CSS_SELECTOR, "#table-chatbot_arena thead th")[1].click()
        names = [r["method"] for r in _table_rows(driver, "table-chatbot_arena")]
        assert names == sorted(names)

        # filtering hides rows that do not match
        box = driver.find_element(By.CSS_SELECTOR, "#ds-chatbot_arena input.filter")
        box.send_keys("synth")
        assert [r["method"] for r in _table_rows(driver, "table-chatbot_arena")] == ["synthesizeme"]
        box.clear()
        box.send_keys(" ")  # clear() does not fire input events
        assert console_errors(driver) == []
        driver.save_screenshot(str(artifacts_dir / "leaderboard-sorted-filtered.png"))

        # a method page: personas shown as text, per-user table matches results.json
        driver.get((out / "methods" / "synthesizeme.html").resolve().as_uri())
        assert console_errors(driver) == []
        personas = driver.find_elements(By.CSS_SELECTOR, "pre.persona")
        assert len(personas) == 16  # 8 users x 2 datasets
        assert driver.find_elements(By.CSS_SELECTOR, "pre.persona b") == []
        page_text = driver.find_element(By.TAG_NAME, "body").get_attribute("textContent")
        assert "Prefers short answers & <b>bold</b> claims (user 0)" in page_text
        users = driver.execute_script(
            "return Array.from(document.querySelectorAll('table.peruser'))[0].tBodies[0].rows.length;")
        assert users == len(_expected(results_dir, "chatbot_arena")["synthesizeme"]["per_user"])
        driver.save_screenshot(str(artifacts_dir / "leaderboard-method.png"))


def test_site_readable_without_javascript(standard_site: tuple[Path, Path]) -> None:
    with chromium(javascript=False) as driver:
        driver.get((standard_site[1] / "index.html").resolve().as_uri())
        n_rows = driver.execute_script("return document.querySelectorAll('#table-chatbot_arena tbody tr').length;")
        assert n_rows == 5
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
        assert HOSTILE_NAME in [r["method"] for r in _table_rows(driver, "table-chatbot_arena")]
