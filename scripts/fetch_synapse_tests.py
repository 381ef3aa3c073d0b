#!/usr/bin/env python3
"""Fetch Synapse's own test harness (its ``tests`` package) for the installed version.

Synapse publishes ``tests/`` only in its sdist. This script asks pip's configured
package index (``PIP_INDEX_URL`` or ``pip config``, else pip's own default) for
the sdist of the *installed* matrix-synapse version, checks the file against the
sha256 the index publishes, and extracts ``tests/`` into
``.cache/synapse-tests/<version>/``. Nothing of Synapse's is committed: the
cache folder is ignored by git. A second run with the same version does nothing.

Usage: python scripts/fetch_synapse_tests.py   (prints the folder to put on sys.path)
"""

from __future__ import annotations

import hashlib
import html.parser
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "synapse-tests"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


class FetchError(RuntimeError):
    pass


def index_url() -> str:
    """The index pip would use, without naming a host here."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            check=False,
        )
        url = out.stdout.strip() if out.returncode == 0 else ""
    if not url:
        from pip._internal.models.index import PyPI  # pip's default index

        url = PyPI.simple_url
    return url.rstrip("/") + "/"


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def find_sdist(version: str) -> tuple[str, str]:
    """Return (url, sha256) of the sdist for ``version`` from the index."""
    page = urllib.parse.urljoin(index_url(), "matrix-synapse/")
    req = urllib.request.Request(
        page, headers={"Accept": f"{JSON_ACCEPT}, text/html;q=0.1"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        ctype = resp.headers.get("Content-Type", "")
    wanted = f"matrix_synapse-{version}.tar.gz"
    if "json" in ctype:
        for f in json.loads(body)["files"]:
            if f["filename"].lower() == wanted:
                return urllib.parse.urljoin(page, f["url"]), f["hashes"]["sha256"]
    else:
        parser = _LinkParser()
        parser.feed(body.decode("utf-8"))
        for href in parser.links:
            url, _, frag = href.partition("#")
            if url.rsplit("/", 1)[-1].lower() == wanted and frag.startswith("sha256="):
                return urllib.parse.urljoin(page, url), frag[len("sha256=") :]
    raise FetchError(f"the index at {page} has no {wanted} with a sha256")


def fetch(version: str) -> Path:
    dest = CACHE / version
    if (dest / "tests" / "unittest.py").is_file():
        return dest
    url, sha256 = find_sdist(version)
    with urllib.request.urlopen(url, timeout=300) as resp:
        data = resp.read()
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise FetchError(f"sha256 mismatch for {url}: index says {sha256}, got {got}")
    tmp = CACHE / f".{version}.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    prefix = f"matrix_synapse-{version}/tests/"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(prefix) and (m.isfile() or m.isdir()):
                m.name = m.name[len(f"matrix_synapse-{version}/") :]
                members.append(m)
        if not members:
            raise FetchError(f"{url} holds no tests/ folder")
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(dest)
    return dest


def use_harness() -> str:
    """Fetch the harness of the installed Synapse and put it first on sys.path.

    First, so that ``tests`` is Synapse's package. Returns the folder.

    Raises:
        FetchError: naming the version and why it could not be fetched.
    """
    version = metadata.version("matrix-synapse")
    try:
        path = str(fetch(version))
    except (OSError, FetchError) as e:
        raise FetchError(
            f"could not fetch Synapse {version}'s test harness: {e}"
        ) from e
    if path not in sys.path:
        sys.path.insert(0, path)
    return path


def main() -> int:
    try:
        print(use_harness())
    except FetchError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
