"""index.html in a real browser: headless Chromium (skipped, with the reason, where it is not installed).

A session over two tiny runs writes the report; Chromium loads it at 1280x800 from the file (offline),
a probe script reports where the overview matrix and its first (failing) row lie, and a screenshot of
the first screen is kept next to the report (``first_screen.png``) for a person to look at.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="headless Chromium is not installed (apt-get install chromium to run this test)"
)
WIDTH, HEIGHT = 1280, 800
SUITE = f"""
import pytest

{FAST_PROJECTION}
def test_head_tracks(projection):
    \"\"\"The head direction tracks the neuron.\"\"\"
    assert projection.head.r > 0.5

{FAST_PATCHING}
def test_slope_positive(patching):
    assert patching.slope > 0
"""
CLAIMS = 'projection.prediction.r: ">= 0.5"\nprojection.head.r: ">= 2"\n'
PROBE = """<script>
window.addEventListener("load", function () {
  function box(el) { if (!el) return null; var r = el.getBoundingClientRect(); return [r.top, r.bottom]; }
  var row = document.querySelector("#matrix tbody tr");
  var out = {matrix: box(document.getElementById("matrix")), first_row: box(row),
             first_row_text: row ? row.querySelector("th").textContent : null,
             viewport: [window.innerWidth, window.innerHeight],
             images: document.images.length, open: document.querySelectorAll("details[open]").length};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(BROWSER),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_overview_matrix_is_in_the_first_screen(
    pytester: pytest.Pytester, regression_run: Path, hidden_run: Path, tmp_path: Path
) -> None:
    pytester.makepyfile(SUITE)
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    runs = [f"--neuron-run={run}" for run in (regression_run, hidden_run)]
    result = pytester.runpytest_inprocess(*runs, "--neuron-report", "out")
    result.assert_outcomes(passed=6, failed=2)
    out = pytester.path / "out"
    index = out / "index.html"
    probe = out / "probe.html"  # the same page plus the probe script, in the same folder (same relative links)
    probe.write_text(index.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")

    dumped = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout)
    assert found, f"no probe output (exit {dumped.returncode}): {dumped.stderr[-2000:]}"
    facts = json.loads(html.unescape(found.group(1)))
    screen = facts["viewport"][1]  # the first screen: the window less the browser's own bars
    assert 0 < facts["matrix"][0] < screen / 2, facts  # the matrix starts in the upper half of the first screen
    assert facts["first_row"][1] < screen, facts  # and its first row is on it
    assert facts["first_row_text"] == "projection.head.r >= 2", facts  # the failing claim first
    assert facts["images"] == 2 * 6 and facts["open"] == 0, facts  # per-run figures: collapsed sections

    shot = out / "first_screen.png"
    done = chromium(f"--screenshot={shot}", index.as_uri(), profile=tmp_path / "p2")
    assert done.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, done.stderr[-2000:]
