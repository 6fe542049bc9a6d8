"""The page's numbers: the figure that set the verdict printed as the rule read it, counts that add up,
one precision style, nothing in exponent form."""

import html
import json
import re

import pytest

from relink.report.render import _num, _pct, apportion
from relink.report.verdict import as_ruled
from test_report_fixtures import report_args, run, write_set


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
