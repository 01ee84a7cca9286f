"""A screenshot of a sweep's index.html in headless Chromium, one cell clicked.

    python scripts/explorer_screenshot.py runs/<time>-default docs/explorer.png

Opens WORKDIR/index.html as a reader's browser does (`gradlab.viz.explorer.browser`),
clicks a trained cell of the first panel near the middle of its trained region, scrolls
to the map and saves the window (1400 x 1500) as a PNG.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from gradlab.viz.explorer import browser as browser_lib  # noqa: E402

PICK = """
const p = window.GRADLAB.panels[0];
const trained = p.ix.map((x, k) => k).filter(k => p.values.regime[k] === 0);
if (!trained.length) return [p.ix[0], p.iy[0]];
const k = trained[Math.floor(trained.length / 2)];
return [p.ix[k], p.iy[k]];
"""


def main(workdir: str, out: str) -> int:
  browser, why = browser_lib.headless_chromium(1400, 1500)
  if browser is None:
    print(why, file=sys.stderr)
    return 2
  try:
    browser_lib.open_page(browser, os.path.abspath(os.path.join(workdir, "index.html")))
    ix, iy = browser.execute_script(PICK)
    browser_lib.click_cell(browser, 0, ix, iy)
    browser.execute_script("document.getElementById('controls').scrollIntoView()")
    browser.save_screenshot(out)
  finally:
    browser.quit()
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  if len(sys.argv) != 3:
    print("usage: python scripts/explorer_screenshot.py WORKDIR OUT.png", file=sys.stderr)
    sys.exit(2)
  sys.exit(main(sys.argv[1], sys.argv[2]))
