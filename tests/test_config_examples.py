"""Every documented ``homeserver.yaml`` example, loaded as Synapse loads it.

Each ```` ```yaml ```` block of README.md and docs/*.md is written to a file
verbatim and read by Synapse's own config loader (``HomeServerConfig.load_config``,
what ``python -m synapse.app.homeserver -c ...`` runs), on top of a minimal base
file, so YAML's own readings (an unquoted ``off`` is false) are what the module
gets. A block whose first line is ``# homeserver.yaml`` is the shared file the
process blocks of the same page (``# worker1.yaml``...) are loaded with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from signedjson.key import generate_signing_key, write_signing_keys
from synapse.config._base import ConfigError
from synapse.config.homeserver import HomeServerConfig

from synapse_breakout import BreakoutModule
from synapse_breakout.config import BreakoutConfig, Enforcement, UnknownSenders

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def yaml_blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


EXAMPLES = [
    pytest.param(page, i, block, id=f"{page.relative_to(ROOT)}#{i}")
    for page in PAGES
    for i, block in enumerate(yaml_blocks(page))
]


def base_config(tmp_path: Path) -> Path:
    """The least a homeserver.yaml needs besides what the examples show."""
    key = tmp_path / "signing.key"
    with key.open("w") as f:
        write_signing_keys(f, [generate_signing_key("a")])
    path = tmp_path / "base.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "server_name": "example.org",
                "report_stats": False,
                "signing_key_path": str(key),
                "media_store_path": str(tmp_path / "media"),
                "database": {
                    "name": "sqlite3",
                    "args": {"database": str(tmp_path / "homeserver.db")},
                },
                "listeners": [
                    {"port": 8008, "type": "http", "resources": [{"names": ["client"]}]}
                ],
            }
        )
    )
    return path


def load(tmp_path: Path, *texts: str) -> HomeServerConfig:
    """Synapse's config loader on the base file and ``texts``, in this order."""
    args = ["-c", str(base_config(tmp_path))]
    for i, text in enumerate(texts):
        path = tmp_path / f"example{i}.yaml"
        path.write_text(text)
        args += ["-c", str(path)]
    return HomeServerConfig.load_config("example", args)


def breakout_configs(config: HomeServerConfig) -> list[BreakoutConfig]:
    return [
        parsed for cls, parsed in config.modules.loaded_modules if cls is BreakoutModule
    ]


def shared_block(page: Path) -> list[str]:
    return [b for b in yaml_blocks(page) if b.startswith("# homeserver.yaml")]


def test_every_page_with_a_config_example_is_found() -> None:
    # README, the configuration reference and the operations guide show config.
    pages = {page.name for page in PAGES if yaml_blocks(page)}
    assert {"README.md", "configuration.md", "operations.md"} <= pages


@pytest.mark.parametrize(("page", "index", "block"), EXAMPLES)
def test_documented_example_loads(
    tmp_path: Path, page: Path, index: int, block: str
) -> None:
    parsed = yaml.safe_load(block)
    assert isinstance(parsed, dict), "an example is a homeserver.yaml fragment"
    texts = [block]
    if "worker_app" in parsed:
        texts = [*shared_block(page), block]
    config = load(tmp_path, *texts)
    # Synapse merges the files' top-level keys, the later file winning.
    merged: dict[str, Any] = {}
    for text in texts:
        merged.update(yaml.safe_load(text))
    entries = [
        m
        for m in merged.get("modules") or []
        if m.get("module") == "synapse_breakout.BreakoutModule"
    ]
    assert len(breakout_configs(config)) == len(entries)


def test_unquoted_off_is_off(tmp_path: Path) -> None:
    """What a new operator writes, as the docs show it: both keys read as off."""
    config = load(
        tmp_path,
        "modules:\n"
        "  - module: synapse_breakout.BreakoutModule\n"
        "    config:\n"
        "      unknown_senders: off\n"
        "      enforce_power_level_in: off\n",
    )
    [parsed] = breakout_configs(config)
    assert parsed.unknown_senders is UnknownSenders.OFF
    assert parsed.enforce_power_level_in is Enforcement.OFF


@pytest.mark.parametrize("value", ["on", "yes", "true"])
def test_true_is_still_refused(tmp_path: Path, value: str) -> None:
    """Only false has a meaning (off); YAML's true is a mistake, named as one."""
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            "modules:\n"
            "  - module: synapse_breakout.BreakoutModule\n"
            f"    config: {{unknown_senders: {value}}}\n",
        )
    assert info.value.path == ("modules", "<item 0>", "config", "unknown_senders")
    assert "must be one of annotate, reject, off; got True" in str(info.value.__cause__)


def test_off_is_documented_unquoted() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    blocks = [
        yaml.safe_load(b) for b in yaml_blocks(ROOT / "docs" / "configuration.md")
    ]
    configs: list[dict[str, Any]] = [
        m.get("config") or {} for b in blocks for m in b.get("modules") or []
    ]
    assert any(c.get("unknown_senders") is False for c in configs)
    assert "--generate-keys" in text
