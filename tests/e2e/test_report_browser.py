"""`mpibatch report` opened in a real headless Chromium (Debian's package): the page loads without an
error, fetches nothing, and every plot decodes; its screenshot is kept under .cache/artifacts/."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, ROOT, cli_env, faulty_args, make_files, require, run_cli

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / ".cache" / "artifacts"
WINDOW = (1200, 3600)
# Run inside a copy of the page: what the browser made of it, written into the DOM for --dump-dom.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.src) || e)), true);
window.addEventListener('load', () => {
  const images = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt]);
  const fetched = performance.getEntriesByType('resource').map(r => r.name);
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({images, fetched, errors: window.__errors, title: document.title,
                                    width: document.documentElement.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return ""


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (the test setup needs nothing else)."""
    found = chromium_binary()
    if not found and shutil.which("apt-get"):
        for step in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(step, capture_output=True, timeout=900, env={"DEBIAN_FRONTEND": "noninteractive",
                                                                        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            found = chromium_binary()
            if found:
                break
    require(bool(found), "chromium (apt-get install chromium)")
    return found


def headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", "--virtual-time-budget=3000",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args], capture_output=True, text=True,
                          timeout=120)


def test_report_in_a_real_browser(tmp_path: Path, chromium: str) -> None:
    from PIL import Image

    words = {**{f"a{i:02d}": "ok" for i in range(24)}, "b_flaky": "flaky", "c_raise": "raise", "d_segv": "segv",
             "e_sleep": "sleep2", **{f"f{i:02d}": "sleep0.2" for i in range(12)}}
    data, out = make_files(tmp_path / "data", words), tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--run-max-try", "2", "--error-threshold", "-1", "--speculative"), out,
                  ranks=4, env={"MPIBATCH_PERF_INTERVAL": "0.5"})
    assert job.rc == 0, job.stderr
    report = subprocess.run([str(BIN / "mpibatch"), "report", str(out)], capture_output=True, text=True,
                            env=cli_env(), timeout=120)
    assert report.returncode == 0, report.stderr
    page = Path(report.stdout.strip())
    assert page == out / "logs" / "report.html"

    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "\n</body>"))
    dom = headless(chromium, "--dump-dom", probed.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:]
    facts = json.loads(found[1].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                       .replace("&amp;", "&"))
    assert facts["errors"] == [] and facts["fetched"] == []
    assert facts["title"] == f"mpibatch report: {out.name}"
    alts = [alt for *_, alt in facts["images"]]
    assert alts == ["per-rank timeline", "throughput over time", "errors by class over time",
                    "time per phase and rank", "resources per rank"]
    for complete, width, height, alt in facts["images"]:
        assert complete and width >= 600 and height >= 150, alt
    assert facts["width"] <= WINDOW[0]  # nothing wider than the window: no sideways scrolling

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    taken = headless(chromium, f"--screenshot={shot}", page.as_uri())
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    print(f"screenshot of the report: {shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    top = image.crop((0, 0, WINDOW[0], 900))
    assert len(top.getcolors(1 << 20) or []) > 200  # text and plots drawn, not a blank page
