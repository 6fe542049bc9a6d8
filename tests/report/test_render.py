"""The page as a person opens it: headless Chromium renders it from disk, requests nothing, and shows something.

Skips, with the reason, only when no Chromium is installed (`.ci/run`
installs the Debian package ``chromium`` when it is missing).
"""

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from helpers.report import main, report_args, run, write_set
from relink.report.render import _num, _pct, apportion
from relink.report.risk import about
from relink.report.verdict import as_ruled

CHROMIUM = next((p for p in (os.environ.get("RELINK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package "
                                                          "`chromium`; .ci/run installs it)")
NETWORK = re.compile(r"^(https?|wss?|ftp)://", re.I)


def chromium(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *flags, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for: requests whose top frame is a file:// page (the browser's own
    background traffic, e.g. update checks, has no page behind it)."""
    log = json.loads(net_log.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if names.get(event["type"]) == "URL_REQUEST_START_JOB" and \
                str(params.get("network_isolation_key", "")).startswith("file://"):
            urls.append(str(params.get("url")))
    return urls


class Resources(HTMLParser):
    """Every URL-valued attribute and CSS url() the markup holds."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "xlink:href") and value:
                self.urls.append(value)

    def handle_data(self, data):
        self.urls += re.findall(r"url\(\s*['\"]?([^'\")]+)", data) + re.findall(r"@import\s+['\"]([^'\"]+)", data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    emb = write_set(root / "emb", n=800, noise=0.8, seed=41)
    out, js = root / "report.html", root / "report.json"
    rc = main(["report", *report_args(emb, out, "--json", str(js), "--released", "43793", pool=500, boot=100)])
    assert rc == 0
    return out, json.loads(js.read_text())


def test_the_rendered_page_shows_verdict_threat_model_and_headline(report, tmp_path):
    out, doc = report
    done = chromium(tmp_path, out.resolve().as_uri(), "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert '<span class="badge" id="verdict" data-level="high">HIGH</span>' in dom and doc["verdict"]["level"] == "high"
    statement = re.sub(r"\s+", " ", re.search(r'<p id="threat-statement">(.*?)</p>', dom, re.S).group(1))
    assert statement == doc["threat_model"]["statement"]
    assert "(N = 500)" in statement and "M = 43,793 images" in statement
    assert re.search(r'id="attacker-pools">500 candidate reports', dom)
    assert re.search(r'id="released">43,793 \(as declared\)', dom)
    count = about(doc["headline"]["expected_images"])
    headline = re.search(r'<p class="headline" id="headline">(.*?)</p>', dom, re.S).group(1)
    assert f"About {count} of 43,793 released images" in headline and count not in ("0", "n/a")


def test_the_page_requests_nothing_from_the_network(report, tmp_path):
    out, _ = report
    # a control page that does ask for two resources: the detector must see both
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><head><style>body{background:url("http://127.0.0.1:9/bg.png")}</style>'
                       '</head><body><img src="http://127.0.0.1:9/canary.png"><p>control</p></body></html>')
    log = tmp_path / "control-net.json"
    chromium(tmp_path, control.resolve().as_uri(), f"--log-net-log={log}", "--dump-dom")
    seen = page_requests(log)
    assert any(u.endswith("/canary.png") for u in seen) and any(u.endswith("/bg.png") for u in seen), seen
    log = tmp_path / "report-net.json"
    done = chromium(tmp_path, out.resolve().as_uri(), f"--log-net-log={log}", "--dump-dom")
    assert done.returncode == 0 and "relink report" in done.stdout
    assert page_requests(log) == []
    # and the markup itself names no resource beyond the page (the CSP would block one; none is there to block)
    parser = Resources()
    parser.feed(out.read_text())
    assert [u for u in parser.urls if NETWORK.match(u) or u.startswith("//")] == []
    assert "default-src 'none'" in out.read_text()


def test_a_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image

    out, _ = report
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, out.resolve().as_uri(), f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20  # text, tables and the verdict band, not an empty page
    top = pixels[:200].reshape(-1, 3)
    # the verdict band (high: a red-tinted header) is the first thing a reader sees
    assert (np.abs(top - [253, 232, 230]).sum(axis=1) < 12).mean() > 0.2


def test_the_page_prints_on_a4_with_the_print_stylesheet(report, tmp_path):
    out, _ = report
    pdf = tmp_path / "report.pdf"
    done = chromium(tmp_path, out.resolve().as_uri(), f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert done.returncode == 0 and pdf.is_file(), done.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    pages = re.findall(rb"/Type\s*/Page[^s]", data)
    boxes = {tuple(round(float(v)) for v in m.split()) for m in re.findall(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", data)}
    assert 2 <= len(pages) <= 12  # the whole report, on a handful of pages
    assert boxes == {(0, 0, 595, 842)}  # A4 in points: the print stylesheet's @page, not the browser's Letter


def test_the_chapter_shows_the_report_at_its_full_height(tmp_path):
    """The book frames the page (relink.paper.display.framed); once loaded the frame is as tall as the page."""
    from relink.paper.display import framed

    emb = write_set(tmp_path / "emb", n=300, noise=1.0, seed=4)
    out = tmp_path / "r.html"
    assert main(["report", *report_args(emb, out)]) == 0
    book_page = tmp_path / "chapter.html"
    book_page.write_text("<!doctype html><html><body>" + framed(out.read_text(), height=300) + "</body></html>")
    dom = chromium(tmp_path, book_page.as_uri(), "--window-size=1000,800", "--virtual-time-budget=5000",
                   "--dump-dom").stdout
    height = re.search(r'<iframe[^>]*style="[^"]*height:\s*(\d+)px', dom)
    assert height, dom[:500]
    # the report is many screens long: the frame grew from its 300 px fallback to the page's own height
    assert int(height.group(1)) > 3000, height.group(0)

# The page's numbers: the figure that set the verdict printed as the rule read it, counts that add up,
# one precision style, nothing in exponent form.
@pytest.mark.parametrize("x,thresholds,shown", [
    (103.2, (100,), "103"),          # three figures already on the right side
    (100.4, (100,), "100.4"),        # three would read "100 > 100"
    (99.96, (100,), "99.96"),        # three would round onto the threshold from below
    (2.0004, (1.0, 2.0, 5.0), "2.0004"),
    (12345.6, (10, 100), "12,346"),  # whole digits are kept, never 1.23e+04
    (6e-06, (), "0.00000600"),
])
def test_a_number_as_the_rule_read_it(x, thresholds, shown):
    assert as_ruled(x, thresholds) == shown
    v = float(shown.replace(",", ""))
    assert all((v > t) == (x > t) for t in thresholds)


@pytest.mark.parametrize("values", [[11525.0, 500.0, 300.0, 200.0], [0.4, 0.4, 0.2], [3.5, 3.5, 3.0], [10 / 3] * 3,
                                    [1234.56, 7.7, 0.04, 99.7]])
def test_apportioned_counts_add_up_to_their_rounded_total_and_stay_within_one(values):
    got = apportion(values)
    assert sum(got) == round(sum(values))
    assert all(abs(g - v) < 1 for g, v in zip(got, values))


def test_one_precision_style_and_no_exponent():
    assert _num(8.2) == "8.20" and _num(0.0474) == "0.0474" and _num(5.99) == "5.99" and _num(12525) == "12,525"
    assert _pct(0.082) == "8.20%" and _pct(0.0768) == "7.68%" and "e" not in _num(6e-06)


def test_the_page_shows_the_verdict_figures_as_the_band_does_and_guessing_sums_to_the_queries(tmp_path, capsys):
    emb = write_set(tmp_path / "emb", n=400, noise=1.0, seed=3)
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    rc, _, err = run(report_args(emb, out, "--json", str(js)), capsys)
    assert rc == 0, err
    doc = json.loads(js.read_text())
    page = out.read_text()
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    reasons = [r for row in doc["verdict"]["rows"] for r in row["reasons"]]
    assert reasons, "the fixture should give a verdict with reasons"
    table = page[page.index('id="verdict-rule"'):page.index('id="risk"')]
    cells = set(re.findall(r"<td>([^<]*)</td>", table))
    for reason in reasons:  # "excess lower bound 103 > 100": the 103 is in the verdict table as printed
        assert reason in text
        m = re.match(r"(lift|excess)(?: (?:lower|upper) bound)? ([\d,.]+) >", reason)
        if m:
            assert any(m.group(2) in c for c in cells), (reason, cells)
    # the rank histogram's "by guessing" column adds up to the queries it places, as the queries' column does
    hists = page[page.index("Rank of the true match"):]
    for tbl in re.findall(r"<table>(.*?)</table>", hists, flags=re.S)[:1]:
        rows = [re.findall(r"<td>([^<]*)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", tbl, flags=re.S)]
        rows = [r for r in rows if r]
        guess = sum(int(r[-1].replace(",", "")) for r in rows)
        queries = sum(int(r[1].replace(",", "")) for r in rows)
        assert guess == queries == 400
