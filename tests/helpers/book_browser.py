"""The built book as a reader's browser shows it: every page opened in headless Chromium at 1280 px
with the network off (a proxy that answers nothing), then checked for what a reviewer notices.

* a broken image (an ``<img>`` that did not load);
* a figure the text promises and does not show: every ``{numref}`` link to a figure (a link to an
  anchor ``#fig-...``: the marker) must reach a ``<figure>`` holding a loaded image and a numbered
  caption; every figure must have both, and every image a chapter's code outputs must be in one;
* raw LaTeX: math that MathJax left untypeset (a ``.math`` element with no ``mjx-container``),
  a ``$`` or TeX command in the prose, or MathJax loaded from the network;
* a doubled word in the prose ("the the", "synthetic synthetic");
* horizontal overflow: a page wider than the window, or a table, code block, output, figure or
  equation that needs sideways scrolling or sticks out of the text column; a framed page (the
  custodian's report) shown in a frame shorter than itself.

Used by tests/paper/test_smoke.py on the smoke book it builds (no second build) and by hand on
any built book: ``python tests/helpers/book_browser.py book/_build/html``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHROMIUM = next((p for p in (os.environ.get("RELINK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and Path(p).is_file()), None)
WIDTH = int(os.environ.get("RELINK_BROWSER_WIDTH", "1280"))  # px; the narrow-screen check sets it
MARK = "relink-browser-check"
# Sphinx's own utility pages hold no content of the book
SKIP = {"genindex.html", "search.html", "py-modindex.html"}

# Runs in the page once it and MathJax are done; writes its findings into the DOM as JSON, which
# --dump-dom then prints.
CHECK_JS = r"""
(function () {
  function prose(root) {
    const out = [];
    root.querySelectorAll('p, li, figcaption, caption, h1, h2, h3, h4, dd, dt, td, th').forEach(el => {
      const c = el.cloneNode(true);
      c.querySelectorAll('mjx-container, .math, code, pre, script, style, .headerlink').forEach(x => x.remove());
      out.push(c.textContent.replace(/\s+/g, ' ').trim());
    });
    return out;
  }
  function run() {
    const f = {broken: [], figures: [], promises: [], untypeset: 0, raw_tex: [], doubled: [], overflow: [],
               remote_scripts: []};
    document.querySelectorAll('img').forEach(img => {
      if (!(img.complete && img.naturalWidth > 0)) f.broken.push(img.getAttribute('src'));
    });
    document.querySelectorAll('figure').forEach(fig => {
      const img = fig.querySelector('img');
      const cap = fig.querySelector('figcaption');
      f.figures.push({id: fig.id || (fig.querySelector('[id]') || {}).id || '',
                      loaded: !!(img && img.complete && img.naturalWidth > 0),
                      number: !!(cap && cap.querySelector('.caption-number')),
                      caption: cap ? cap.textContent.replace(/\s+/g, ' ').trim() : ''});
    });
    f.uncaptioned = Array.from(document.querySelectorAll('.cell_output img'))
      .filter(img => !img.closest('figure')).map(img => img.getAttribute('src'));
    document.querySelectorAll('a[href*="#fig-"]').forEach(a => f.promises.push(a.getAttribute('href')));
    document.querySelectorAll('.math').forEach(m => { if (!m.querySelector('mjx-container')) f.untypeset += 1; });
    document.querySelectorAll('script[src]').forEach(s => {
      if (/^(https?:)?\/\//i.test(s.getAttribute('src')) && /mathjax/i.test(s.getAttribute('src')))
        f.remote_scripts.push(s.getAttribute('src'));
    });
    const article = document.querySelector('.bd-article') || document.body;
    for (const t of prose(article)) {
      const tex = t.match(/\$[^$]{1,80}\$|\\(frac|sum|operatorname|begin|mathbb|min|le|sim|text)\b/);
      if (tex) f.raw_tex.push(tex[0]);
      const re = /\b([A-Za-z][A-Za-z'-]*)\s+\1\b/gi;
      let m;
      while ((m = re.exec(t)) !== null) f.doubled.push(t.slice(Math.max(0, m.index - 30), m.index + m[0].length + 30));
    }
    document.querySelectorAll('iframe').forEach(fr => {
      let doc = null;
      try { doc = fr.contentDocument; } catch (e) { doc = null; }
      if (doc && doc.documentElement && doc.documentElement.scrollHeight > fr.clientHeight + 4)
        f.overflow.push('iframe "' + (fr.title || '') + '": ' + doc.documentElement.scrollHeight +
                        ' px of content in a ' + fr.clientHeight + ' px frame (not at full height)');
    });
    const de = document.documentElement;
    if (de.scrollWidth > window.innerWidth + 1) f.overflow.push('page ' + de.scrollWidth + ' px wide');
    const right = article.getBoundingClientRect().right;
    article.querySelectorAll('table, pre, .cell_output, .output, figure, img, iframe, div.math, mjx-container[display="true"]').forEach(el => {
      const what = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' "' +
                   el.textContent.replace(/\s+/g, ' ').trim().slice(0, 50) + '"';
      if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0)
        f.overflow.push(what + ': content ' + el.scrollWidth + ' px in ' + el.clientWidth + ' px');
      else if (el.getBoundingClientRect().right > right + 1)
        f.overflow.push(what + ': sticks out of the column by ' + Math.round(el.getBoundingClientRect().right - right) + ' px');
    });
    const out = document.createElement('pre');
    out.id = 'MARK';
    out.textContent = JSON.stringify(f);
    document.body.appendChild(out);
  }
  window.addEventListener('load', () => {
    const mj = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    (mj ? mj.then(() => (window.MathJax.typesetPromise ? window.MathJax.typesetPromise() : null)) : Promise.resolve())
      .then(() => setTimeout(run, 300), () => setTimeout(run, 300));
  });
})();
""".replace("MARK", MARK)


def pages(html: Path) -> list[Path]:
    """Every content page of a built book (not the files it offers for download, such as the custodian's
    report, a standalone page whose policy forbids scripts; its own browser test checks it)."""
    return sorted(p for p in html.rglob("*.html")
                  if p.name not in SKIP
                  and not {"_static", "_sources", "_images", "_downloads"} & set(p.relative_to(html).parts))


def _instrumented_copy(html: Path, dest: Path) -> Path:
    """A copy of the book with the check script added to every page (the book itself is left alone)."""
    shutil.copytree(html, dest)
    (dest / "_relink_check.js").write_text(CHECK_JS)
    for page in pages(dest):
        depth = len(page.relative_to(dest).parts) - 1
        tag = f'<script src="{"../" * depth}_relink_check.js"></script>'
        text = page.read_text()
        page.write_text(text.replace("</body>", tag + "</body>", 1) if "</body>" in text else text + tag)
    return dest


def open_page(page: Path, profile: Path) -> dict:
    """One page in headless Chromium, offline, 1280 px wide: the findings of :data:`CHECK_JS`."""
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # no network: nothing loads remotely
           f"--window-size={WIDTH},1000", "--hide-scrollbars", "--virtual-time-budget=20000", "--dump-dom",
           page.resolve().as_uri()]
    for _ in range(2):  # one retry: a headless start on a busy machine now and then returns an empty DOM
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        found = re.search(rf'<pre id="{MARK}"[^>]*>(.*?)</pre>', done.stdout, flags=re.S)
        if found:
            break
    if not found:
        return {"error": f"the page did not finish loading (chromium exit {done.returncode}): {done.stderr[-300:]}"}
    import html as htmllib

    return json.loads(htmllib.unescape(found.group(1)))


def check_book(html: Path, work: Path, expected_figures: dict[str, list[str]] | None = None,
               uncaptioned_ok: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Problems per page (relative path -> messages); empty when every page passes.

    ``expected_figures``: page -> figure ids it must show (for a figure that no prose links to);
    ``uncaptioned_ok``: pages whose output images may still lack a numbered caption.
    """
    if CHROMIUM is None:
        raise RuntimeError("headless Chromium is not installed")
    copy = _instrumented_copy(Path(html), Path(work) / "book")
    todo = pages(copy)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(todo, pool.map(lambda p: open_page(p, Path(work) / f"profile-{p.stem}"), todo)))
    figures = {p.relative_to(copy).as_posix(): {f["id"]: f for f in r.get("figures", [])} for p, r in results.items()}
    problems: dict[str, list[str]] = {}
    for page, r in results.items():
        name = page.relative_to(copy).as_posix()
        msgs = []
        if "error" in r:
            problems[name] = [r["error"]]
            continue
        msgs += [f"broken image {src}" for src in r["broken"]]
        for fig in r["figures"]:
            if not fig["loaded"]:
                msgs.append(f"figure {fig['id'] or '(no id)'} shows no image")
            if not fig["number"] or len(fig["caption"]) < 20:
                msgs.append(f"figure {fig['id'] or '(no id)'} has no numbered caption")
        if name not in uncaptioned_ok:
            msgs += [f"figure {src} has no number or caption (not in a figure)" for src in r["uncaptioned"]]
        for href in r["promises"]:
            target, _, anchor = href.partition("#")
            target_page = (page.parent / target).resolve().relative_to(copy.resolve()).as_posix() if target else name
            fig = figures.get(target_page, {}).get(anchor)
            if fig is None or not fig["loaded"]:
                msgs.append(f"the text promises figure {anchor} ({href}) and {target_page} does not show it")
        for anchor in (expected_figures or {}).get(name, []):
            if not figures[name].get(anchor, {}).get("loaded"):
                msgs.append(f"expected figure {anchor} is not shown")
        if r["untypeset"]:
            msgs.append(f"{r['untypeset']} math element(s) not typeset (raw LaTeX)")
        msgs += [f"raw LaTeX in the text: {t!r}" for t in r["raw_tex"]]
        msgs += [f"MathJax loaded from the network: {s}" for s in r["remote_scripts"]]
        msgs += [f"doubled word: ...{t}..." for t in r["doubled"]]
        msgs += [f"overflow at {WIDTH} px: {o}" for o in r["overflow"]]
        if msgs:
            problems[name] = msgs
    return problems


def main(argv: list[str]) -> int:
    import tempfile

    html = Path(argv[0] if argv else "book/_build/html")
    with tempfile.TemporaryDirectory() as work:
        problems = check_book(html, Path(work))
    n = len(pages(html))
    for page, msgs in problems.items():
        for msg in msgs:
            print(f"{page}: {msg}")
    print(f"{n} pages opened at {WIDTH} px with the network off; {len(problems)} with problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
