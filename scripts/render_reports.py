"""Render ltrr's HTML reports to PNG screenshots in headless Chromium, to look at them as a reader
would (legends over data, overlapping lines, empty panels).

Needs Debian's chromium (``scripts/install_chromium.sh``). Usage::

    python scripts/render_reports.py runs/replay/report.html runs/ope/report.html [--out shots/]

Each ``report.html`` becomes ``<out>/<parent dir name>.png`` (default: next to the report).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

#: flags that let Chromium run headless as root on a machine without network or display
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def render(html: Path, png: Path, width: int = 1200, height: int = 4000) -> Path:
    """Screenshot ``html`` (a tall window: the whole report) into ``png``."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed: run scripts/install_chromium.sh")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png.resolve()}", html.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--height", type=int, default=4000)
    args = ap.parse_args()
    for html in args.reports:
        png = (args.out or html.parent) / f"{html.parent.name}.png"
        print(render(html, png, height=args.height))


if __name__ == "__main__":
    main()
