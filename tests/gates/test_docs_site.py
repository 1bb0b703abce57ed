"""The docs site: pages link repository files (plots under results/) by their path from the page, as GitHub and
a checkout read them, and the MkDocs hook (scripts/mkdocs_hooks.py) makes those links work in the built site,
while a link to a missing file still fails ``mkdocs build --strict``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "scripts" / "mkdocs_hooks.py"


def _site(root: Path, pages: dict[str, str]) -> subprocess.CompletedProcess:
    """Build a small site under ``root`` with the project's hook; ``pages`` maps docs paths to Markdown."""
    nav = "".join(f"  - {path}\n" for path in pages)
    (root / "mkdocs.yml").write_text(
        f"site_name: t\nsite_dir: site\nhooks:\n  - {HOOK}\nvalidation:\n  anchors: warn\nnav:\n{nav}"
    )
    for path, text in pages.items():
        (root / "docs" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "docs" / path).write_text(text)
    plots = root / "results" / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    (plots / "x.png").write_bytes(b"\x89PNG")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(
        command, cwd=root, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    )


def test_repository_files_linked_from_pages_are_copied_into_the_site(tmp_path):
    done = _site(
        tmp_path,
        {
            "index.md": "# Home\n\n![plot](../results/plots/x.png)\n\n[page](sub/page.md)\n",
            "sub/page.md": "# Page\n\n![plot](../../results/plots/x.png) and [the same](../../results/plots/x.png)\n",
        },
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "results" / "plots" / "x.png").read_bytes() == b"\x89PNG"
    assert 'src="results/plots/x.png"' in (tmp_path / "site" / "index.html").read_text()
    page = (tmp_path / "site" / "sub" / "page" / "index.html").read_text()
    assert 'src="../../results/plots/x.png"' in page and 'href="../../results/plots/x.png"' in page


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("![gone](../results/plots/gone.png)", "'../results/plots/gone.png'"),
        ("[page](index.md#no-such-heading)", "'index.md#no-such-heading', but there is no such anchor"),
    ],
)
def test_a_broken_link_fails_the_strict_build(tmp_path, text, complaint):
    done = _site(tmp_path, {"index.md": f"# Home\n\n{text}\n"})
    assert done.returncode != 0 and complaint in done.stderr, done.stderr
