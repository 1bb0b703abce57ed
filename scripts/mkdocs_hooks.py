"""MkDocs hook (mkdocs.yml ``hooks:``): docs pages link repository files by their path in the checkout.

A page under ``docs/`` links a file outside it the way GitHub and a checkout read it, relative to the page:
``![isic](../results/mission/plots/isic-tradeoff.png)`` from ``docs/mission.md``. MkDocs serves ``docs/`` only,
so in the site that link would lead nowhere (and ``mkdocs build --strict`` fails on it). This hook copies each
repository file a page links into the site at its repository path (``results/mission/plots/isic-tradeoff.png``)
and points the link there: one copy in git (the published file under ``results/``), no generated assets to keep
in step, and the link is checked like any other. A link to a file that does not exist is left as written, so
``--strict`` names it.

The API reference's docstrings use Sphinx roles (``:func:`run_sweep```), which mkdocstrings renders as written;
the hook drops the role and a leading ``~`` so the page shows the name in code, as Sphinx would.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):(?=<code>)")
TILDE = re.compile(r"<code>~(?=[\w.]+</code>)")
LINK = re.compile(r"(?P<open>\]\()(?P<target>\.\./[^)\s#]+)(?P<close>[#)\s])")
"""A Markdown link or image whose target climbs out of the page's folder (``](../x)``), anchors kept."""


def _repo_path(page_uri: str, target: str, docs_dir: str) -> str | None:
    """The repository path ``target`` names from the page ``page_uri``, or None when it stays in the docs folder."""
    path = posixpath.normpath(posixpath.join(docs_dir, posixpath.dirname(page_uri), target))
    if path.startswith("../") or path == ".." or path == docs_dir or path.startswith(docs_dir + "/"):
        return None
    return path


def _docs_dir(config) -> tuple[Path, str]:
    root = Path(config.config_file_path).resolve().parent
    return root, Path(config.docs_dir).resolve().relative_to(root).as_posix()


def _linked(files: Files, config) -> dict[str, Path]:
    """Every existing repository file outside the docs folder that a page links, by its repository path."""
    root, docs_dir = _docs_dir(config)
    found = {}
    for page in files.documentation_pages():
        for match in LINK.finditer(Path(page.abs_src_path).read_text(encoding="utf-8")):
            path = _repo_path(page.src_uri, match["target"], docs_dir)
            if path is not None and (root / path).is_file():
                found[path] = root / path
    return found


def on_files(files: Files, config) -> Files:
    for path, source in sorted(_linked(files, config).items()):
        if files.get_file_from_path(path) is None:
            files.append(File.generated(config, path, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    _, docs_dir = _docs_dir(config)

    def relink(match: re.Match) -> str:
        path = _repo_path(page.file.src_uri, match["target"], docs_dir)
        if path is None or files.get_file_from_path(path) is None:
            return match[0]
        target = posixpath.relpath(path, posixpath.dirname(page.file.src_uri) or ".")
        return f"{match['open']}{target}{match['close']}"

    return LINK.sub(relink, markdown)


def on_post_page(output: str, page, config) -> str:
    return TILDE.sub("<code>", ROLE.sub("", output))
