"""The book's browser check finds what it is for: each kind of fault, planted in a small page
shaped like the book's, is reported, and a clean page passes (the real book is checked in
tests/paper/test_smoke.py, on the smoke book it builds)."""

from __future__ import annotations

import base64

import pytest

from helpers.book_browser import CHROMIUM, check_book

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package "
                                                          "`chromium`; .ci/run installs it)")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def page(body: str) -> str:
    return (f'<!DOCTYPE html><html><head><style>.bd-article{{width:700px}}</style></head>'
            f'<body><main><article class="bd-article">{body}</article></main></body></html>')


FIGURE = ('<figure id="fig-a"><img src="_images/a.png" style="width:200px"><figcaption><p>'
          '<span class="caption-number">Fig. 1.1 </span>A caption that says what is drawn, with units.</p>'
          '</figcaption></figure>')


@pytest.fixture
def book(tmp_path):
    html = tmp_path / "html"
    (html / "_images").mkdir(parents=True)
    (html / "_images" / "a.png").write_bytes(PNG)
    (html / "good.html").write_text(page(f'<p>Recall is shown in <a href="#fig-a">Fig. 1.1</a>.</p>{FIGURE}'))
    return html


FAULTS = {
    "broken-image": ('<p>An image.</p><img src="_images/missing.png">', "broken image"),
    "promise": ('<p>See <a href="good.html#fig-b">Fig. 1.2</a>.</p>', "promises figure fig-b"),
    "dollar": ('<p>The pool holds $N-1$ distractors.</p>', "raw LaTeX"),
    "untypeset": ('<div class="math notranslate nohighlight">\\[ X \\sim Y \\]</div>', "not typeset"),
    "doubled": ('<p>This is the the estimator.</p>', "doubled word"),
    "wide-table": ('<p>Cohorts</p><table><tr>' + '<td style="white-space:nowrap">a wide cell of a wide table</td>' * 12
                   + '</tr></table>', "overflow"),
    "wide-code": ('<p>Code</p><pre style="overflow-x:auto">' + "x" * 400 + '</pre>', "overflow"),
    "no-caption": ('<figure id="fig-c"><img src="_images/a.png"></figure>', "no numbered caption"),
    "short-frame": ('<iframe title="r" style="height:100px" srcdoc="<p style=&quot;height:900px&quot;>tall</p>"></iframe>',
                    "not at full height"),
    "bare-output": ('<div class="cell_output"><img src="_images/a.png"></div>', "not in a figure"),
}


def test_a_clean_page_passes_and_each_planted_fault_is_reported(book, tmp_path):
    """One browser pass over a clean page and one page per fault (one pass keeps the test quick)."""
    for name, (body, _) in FAULTS.items():
        (book / f"{name}.html").write_text(page(body))
    problems = check_book(book, tmp_path / "work")
    assert set(problems) == {f"{name}.html" for name in FAULTS}, problems  # good.html passes
    for name, (_, message) in FAULTS.items():
        assert any(message in m for m in problems[f"{name}.html"]), (name, problems[f"{name}.html"])
