"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors, and says what the code does.

The strict build fails on a broken link, a missing page, a page left out of the
nav or a stale anchor (mkdocs.yml's ``validation``), and the settings reference
is generated from the code (docs/hooks/settings_reference.py), which refuses a
setting without a description. These tests build the site as a reader would
(``mkdocs build --strict``, no network), check the generated page against the
settings module's source, and check the examples a newcomer copies.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from events.kinds import EventKind
from interceptor.envelope import parse_push
from interceptor.payload import desktop_payload
from testing import processes
from testing.docs_site import settings_reference

REPOSITORY = processes.REPOSITORY
DOCS = REPOSITORY / "docs"
BUILD_TIMEOUT = 120


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built strictly into a temporary directory."""
    output = tmp_path_factory.mktemp("site")
    # Material prints a banner about MkDocs 2 unless told not to; nothing else in the output may be a warning.
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(output)],
                           check=False, cwd=REPOSITORY, env=environment, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT)
    log = built.stdout + built.stderr
    assert built.returncode == 0, log
    assert "WARNING" not in log, log
    return output


def nav_pages() -> list[str]:
    config = yaml.load((REPOSITORY / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(items) -> list[str]:
        pages = []
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            pages += walk(value) if isinstance(value, list) else [value]
        return pages

    return walk(config["nav"])


def test_every_page_is_built(site: Path) -> None:
    """Each Markdown file of docs/ is a page of the site (the strict build refuses one left out of the nav)."""
    sources = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "hooks" not in path.parts)
    assert sorted(nav_pages()) == sources
    for page in sources:
        built = site / ("index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html")
        assert built.is_file(), page


def test_the_site_needs_no_network(site: Path) -> None:
    """No page loads fonts or scripts from another host (theme.font: false; Material's assets are local)."""
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
        external = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', html)
        assert external == [], (page, external)


def test_every_setting_the_code_reads_is_on_the_settings_page(site: Path) -> None:
    """Read from settings.py's source with a plain pattern (not the hook's own parsing): each name is on the page."""
    source = (REPOSITORY / "aa_site" / "settings.py").read_text()
    names = set(re.findall(r'\benv\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert len(names) > 80, names
    page = (site / "settings" / "index.html").read_text(encoding="utf-8")
    missing = sorted(name for name in names if f"<code>{name}</code>" not in page)
    assert missing == []


def test_the_settings_page_shows_the_codes_defaults() -> None:
    """Defaults come from the code: a few, as the settings module computes them, against the rendered rows."""
    from django.conf import settings

    text = settings_reference().render()
    assert "| `CONVERSATION_NAME_RATE_LIMIT` | `60/minute` |" in text
    assert "| `CONVERSATION_NAME_LOOKUP_RATE_LIMIT` | `1200/minute` |" in text
    row = next(line for line in text.splitlines() if line.startswith("| `EVENT_HISTORY_MAX_BYTES` |"))
    assert f"`{settings.EVENT_HISTORY_MAX_BYTES}` (16 MiB)" in row and "65536 to 1073741824" in row
    row = next(line for line in text.splitlines() if line.startswith("| `ACCESS_LOG` |"))
    assert "`all` (the image: `errors`)" in row  # the Dockerfile's ENV


def test_a_setting_without_a_description_stops_the_build(tmp_path: Path) -> None:
    """Removing an entry, or describing a setting nobody reads, is refused with the name and where it is read."""
    module = settings_reference()
    sections = yaml.safe_load(module.DESCRIPTIONS.read_text())
    for section in sections:
        section["settings"] = [entry for entry in section["settings"] if "PUSH_MAX_BODY_BYTES" not in entry["names"]]
    sections[0]["settings"].append({"names": ["NO_SUCH_SETTING"], "text": "nothing"})
    descriptions = tmp_path / "settings.yml"
    descriptions.write_text(yaml.safe_dump(sections))
    with pytest.raises(module.SettingsDrift) as refused:
        module.render(descriptions=descriptions)
    message = str(refused.value)
    assert "PUSH_MAX_BODY_BYTES (aa_site/settings.py:" in message
    assert "NO_SUCH_SETTING is described" in message


def test_the_getting_started_push_body_is_what_the_interceptor_accepts() -> None:
    """The copy-paste body parses as the interceptor parses it, and the desktop's payload takes participant_role
    and new_recognition_result_message_id from the message's attributes."""
    text = (DOCS / "getting-started.md").read_text()
    body = re.search(r"<!-- push body:[^>]*-->\n```json\n(.*?)```", text, re.DOTALL)[1]
    message = parse_push(body.encode())
    payload = desktop_payload(message, event=EventKind.NEW_RECOGNITION_RESULT, received_at=datetime.now(UTC))
    assert payload["conversation_name"] == "projects/acme-cx/conversations/CONV-7f3a"
    assert payload["participant_role"] == "END_USER"
    assert payload["new_recognition_result_message_id"] == "RR-0001"
    assert payload["message_id"] == "11794029103541004"
    assert json.loads(payload["data"])["type"] == "NEW_RECOGNITION_RESULT"
    # The page shows what the desktop prints: the same fields and values.
    for field in ("'participant_role': 'END_USER'", "'new_recognition_result_message_id': 'RR-0001'",
                  "'conversation_name': 'projects/acme-cx/conversations/CONV-7f3a'"):
        assert field in text


def test_the_readmes_links_reach_files() -> None:
    """The README is read on GitHub, outside the site: its relative links must name files of the repository."""
    readme = (REPOSITORY / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    relative = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert relative, "the README links into docs/"
    for link in relative:
        assert (REPOSITORY / link).exists(), link


@pytest.mark.parametrize("document", [REPOSITORY / "README.md", *sorted(DOCS.rglob("*.md"))],
                         ids=lambda path: str(path.relative_to(REPOSITORY)))
def test_the_docs_speak_to_users(document: Path) -> None:
    """No work-item numbers, no pointers into the project's internal notes."""
    text = document.read_text()
    assert not re.search(r"(?<![\w&/])#\d+\b", text), re.search(r".{0,40}(?<![\w&/])#\d+\b.{0,40}", text)[0]
    for internal in ("../shared", "CONTRACT.md"):
        assert internal not in text


def test_the_readme_is_a_front_door() -> None:
    """Short, and opening with the two commands that run the service and the tests."""
    readme = (REPOSITORY / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)[1]
    assert first_block.splitlines()[0].startswith("./scripts/run-local.sh")
    assert first_block.splitlines()[1].startswith("./scripts/test.sh")
