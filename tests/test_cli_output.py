"""`evolve --help / best / status` in an 80-column terminal (COLUMNS=80), over a run shaped like a
real GPU run (24 shapes of the default suite): nothing truncated, no word stranded by a hard
line break, the per-shape table on one line per shape, ratios to 4 significant digits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard_fixture import GPU_SHAPES, make_synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def evolve(*args: str) -> str:
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-m", "evolve", *args], capture_output=True, text=True, env=env,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli-runs")
    make_synthetic_run(root, name="gpu24", flex=True, shapes=GPU_SHAPES, stored_name="gqa")
    return root


def fits(out: str) -> None:
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
    assert "…" not in out  # rich's mark of a cut header or cell


def test_best_over_24_shapes_fits_45_lines(runs):
    out = evolve("best", "gpu24", "--runs-dir", str(runs))
    fits(out)
    assert len(out.splitlines()) <= 45, out
    assert "candidate #3" in out  # the champion, not #7 (highest single score, lost its rematch)
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+x\d+/\d+ d\d+ \d+k( c)?\s", line)]
    assert len(rows) == 24 and rows[1].split()[:5] == ["16x32/8", "d128", "1k", "c", "9.479"]
    assert not re.search(r"\d\.\d{6,}", out)  # no unrounded floats


def test_status_of_a_run_keeps_every_header(runs):
    out = evolve("status", "gpu24", "--runs-dir", str(runs))
    fits(out)
    assert re.search(r"^ *worker +state +job +jobs +busy% +compile +timing +gpu-idle +idle +restarts *$",
                     out, re.M), out
    assert re.search(r"^ *time +kind +id +message *$", out, re.M)
    assert "#7 vs #3: loses (ratio 0.9987)" in out  # stored as 0.9986529677431233
    assert "gpu24 (gqa)" in out  # the folder, the stored name beside it


def test_status_lists_runs_by_folder(runs):
    out = evolve("status", "--runs-dir", str(runs))
    fits(out)
    assert re.search(r"^ *run +target +operator +status +candidates +best +best score +elapsed *$", out, re.M), out
    assert re.search(r"^ *gpu24 \(gqa\) +gqa +agent +finished +8 +#3 +0\.0633 ", out, re.M), out


def test_help_strands_no_word(runs):
    for args in (["--help"], ["dashboard", "--help"], ["best", "--help"]):
        out = evolve(*args)
        fits(out)
        for line in out.splitlines():
            if line.lstrip().startswith(("╭", "╰")):
                continue  # a panel's title
            words = line.strip(" │").split()
            # a lone word is only allowed where a sentence ends (rich's own wrap); a hard break
            # written for another width leaves one mid-sentence
            assert len(words) != 1 or words[0].endswith((".", ")", ":")) or words[0].startswith("-"), line
