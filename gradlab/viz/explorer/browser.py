"""Headless Chromium for index.html: the browser test, the screenshot in README and the
explorer benchmark open the real file the way a reader's browser does.

Needs selenium (requirements.txt) and Debian's ``chromium`` and ``chromium-driver``
(``apt-get install -y chromium chromium-driver``; .ci/run installs them).
"""

from __future__ import annotations

import shutil
import time
from typing import Any


def headless_chromium(width: int = 1400, height: int = 1800) -> tuple[Any, str]:
  """(a selenium Chrome driver, '') or (None, why there is none)."""
  try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
  except ImportError:
    return None, "selenium is not installed (pip install -r requirements.txt)"
  binary = shutil.which("chromium") or shutil.which("chromium-browser")
  driver = shutil.which("chromedriver")
  if not binary or not driver:
    return None, ("no headless Chromium here: apt-get install -y chromium chromium-driver "
                  "(.ci/run does)")
  options = Options()
  for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}"):
    options.add_argument(arg)
  options.binary_location = binary
  options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  return webdriver.Chrome(service=Service(driver), options=options), ""


def open_page(browser: Any, path: str, timeout_s: float = 60.0) -> float:
  """Opens index.html at `path`; returns the milliseconds from navigation to the drawn
  map (`gradlabExplorer.readyMs`). Raises TimeoutError when the map never draws."""
  browser.get("file://" + path)
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    ready = browser.execute_script(
      "return window.gradlabExplorer && window.gradlabExplorer.readyMs")
    if ready:
      return float(ready)
    time.sleep(0.1)
  raise TimeoutError(f"the map of '{path}' was not drawn within {timeout_s:.0f} s")


def click_cell(browser: Any, panel: int, ix: int, iy: int, timeout_s: float = 30.0) -> float:
  """Clicks cell (ix, iy) of `panel` with the mouse, as a reader does; returns the
  milliseconds from the click to the run's curves drawn."""
  from selenium.webdriver.common.action_chains import ActionChains

  browser.execute_script("document.getElementById('map').scrollIntoView()")
  at = browser.execute_script(
    "return window.gradlabExplorer.cellCenter(arguments[0], arguments[1], arguments[2])",
    panel, ix, iy)
  browser.execute_script("window.gradlabExplorer.lastCellMs = null")
  ActionChains(browser).move_by_offset(at["x"], at["y"]).click().perform()
  ActionChains(browser).move_by_offset(-at["x"], -at["y"]).perform()  # back to the origin
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    took = browser.execute_script("return window.gradlabExplorer.lastCellMs")
    if took is not None:
      return float(took)
    time.sleep(0.1)
  raise TimeoutError("the clicked cell's curves were not drawn")


def severe_errors(browser: Any) -> list[str]:
  """The page's console messages at level SEVERE (script errors, failed loads)."""
  return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
