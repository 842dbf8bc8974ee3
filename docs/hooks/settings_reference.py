"""MkDocs hook: the settings reference page, generated from the code that reads the settings.

Every environment setting the service reads goes through ``aa_site.env``'s readers (``env.integer("NAME",
default, minimum=..., maximum=...)`` and the like) or, for the few read outside settings,
``os.environ.get("NAME")``. This hook finds those calls in the service's packages with ``ast`` (nothing is
imported or run), so each setting's default, unit and bounds on the page are the code's. What a setting is
for, and when to change it, is prose in ``docs/hooks/settings.yml``; the build stops, naming them, when a
setting the code reads has no entry there or an entry names a setting the code does not read. The
Dockerfile's ``ENV`` lines add the image's own values. ``docs/settings.md`` holds the page around the tables
(the marker below is replaced).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
DESCRIPTIONS = Path(__file__).resolve().with_name("settings.yml")
SERVICE_PACKAGES = ("aa_site", "auth_providers", "common", "connector", "deployment", "events", "interceptor")
PAGE = "settings.md"
MARKER = "<!-- settings tables (docs/hooks/settings_reference.py) -->"
READERS = {"text", "flag", "integer", "number", "choice", "items", "rate", "renamed", "redis_url"}
# Units from a setting's name when its entry names none.
TEXT_SUFFIXES = (("_URL", "URL"), ("_ROOT", "URL"), ("_ENDPOINT", "URL"), ("_FILE", "file path"),
                 ("_PATH", "file path"), ("_DIR", "directory"))
OPERATORS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Sub: operator.sub, ast.Pow: operator.pow}
UNIT_SUFFIXES = (("_SECONDS", "seconds"), ("_TIMEOUT", "seconds"), ("_DURATION", "seconds"),
                 ("_INTERVAL", "seconds"), ("_MINUTES", "minutes"), ("_BYTES", "bytes"), ("_PAYLOAD", "bytes"))


@dataclass
class Setting:
    name: str
    reader: str  # env's reader, or "environ" for os.environ.get
    where: str  # path:line of the first read
    default: str = ""  # as the page shows it (Markdown)
    minimum: str = ""
    maximum: str = ""
    choices: list[str] = field(default_factory=list)
    old_name: str = ""  # env.renamed's earlier name, read too


class SettingsDrift(Exception):
    """The code and docs/hooks/settings.yml disagree about which settings exist."""


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level names bound to literals (``SERVICE_ROLES = (...)``), for choices given by name."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return found


def _evaluate(node: ast.AST) -> object:
    """A literal or constant arithmetic (``16 * 1024 * 1024``, ``2**20``); ValueError for anything else."""
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if not all(isinstance(value, (int, float)) for value in (left, right)):
            raise ValueError
        return OPERATORS[type(node.op)](left, right)
    return ast.literal_eval(node)


def _size(value: int) -> str:
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 2**power and value % 2**power == 0:
            return f" ({value // 2**power} {unit})"
    return ""


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}".replace(",", "") if isinstance(value, int) else str(value)


def _render_default(name: str, reader: str, node: ast.AST | None, source: str) -> str:
    if node is None:
        return {"flag": "`false`", "integer": "", "number": ""}.get(reader, "empty")
    if isinstance(node, ast.JoinedStr):  # f"https://{SALESFORCE_DOMAIN}": the pattern, with the setting named
        text = "".join(part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
                       for part in node.values)
        return f"`{text}`"
    try:
        value = _evaluate(node)
    except ValueError:
        return f"`{ast.get_source_segment(source, node)}` (computed)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (int, float)):
        return f"`{_number(value)}`" + (_size(value) if isinstance(value, int) and "BYTES" in name else "")
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{item}`" for item in value) if value else "empty"
    return f"`{value}`" if value != "" else "empty"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def read_settings(repository: Path = REPOSITORY) -> dict[str, Setting]:
    """Every setting the service reads, by name, in the order first read (settings.py first)."""
    files = [repository / "aa_site" / "settings.py"]
    files += [path for package in SERVICE_PACKAGES for path in sorted((repository / package).rglob("*.py"))
              if path not in files and "tests" not in path.parts]
    settings: dict[str, Setting] = {}
    for path in files:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        constants = _constants(tree)
        calls = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Call)), key=lambda n: n.lineno)
        for call in calls:
            function = call.func
            if not (call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
                continue
            name = call.args[0].value
            if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name) \
                    and function.value.id == "env" and function.attr in READERS:
                reader = function.attr
            elif isinstance(function, ast.Attribute) and function.attr in ("get", "getenv") \
                    and ast.unparse(function.value) in ("os.environ", "os"):
                reader = "environ"
            else:
                continue
            if name in settings:
                continue
            setting = Setting(name=name, reader=reader, where=f"{path.relative_to(repository)}:{call.lineno}")
            arguments = list(call.args[1:])
            if reader == "renamed":
                setting.old_name = _evaluate(arguments.pop(0)) if arguments else ""
            default = arguments[0] if arguments else _keyword(call, "default")
            if reader == "choice":
                choices = arguments[1] if len(arguments) > 1 else _keyword(call, "choices")
                if isinstance(choices, ast.Name):
                    setting.choices = list(constants.get(choices.id, ()))
                elif choices is not None:
                    setting.choices = list(_evaluate(choices))
            if reader == "environ":
                default = arguments[0] if arguments else None
                setting.default = "empty" if default is None else _render_default(name, "text", default, source)
            else:
                setting.default = _render_default(name, reader, default, source)
            for bound in ("minimum", "maximum"):
                node = _keyword(call, bound)
                if node is not None:
                    try:
                        setattr(setting, bound, _number(_evaluate(node)))
                    except ValueError:
                        setattr(setting, bound, ast.get_source_segment(source, node))
            settings[name] = setting
    return settings


def image_values(repository: Path = REPOSITORY) -> dict[str, str]:
    """The Dockerfile's ENV values (``NAME=value`` pairs, continuation lines joined)."""
    text = (repository / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    values = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            values.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return values


def _unit(setting: Setting) -> str:
    if setting.reader == "flag":
        return "`true` / `false`"
    if setting.reader == "choice":
        return " / ".join(f"`{choice}`" for choice in setting.choices)
    if setting.reader == "rate":
        return "`N/unit` (`30/minute`, `5/10s`), `off`"
    if setting.reader == "items":
        return "comma-separated list"
    unit = next((unit for suffix, unit in UNIT_SUFFIXES if setting.name.endswith(suffix)), "")
    if setting.reader in ("text", "renamed", "environ", "redis_url"):
        return next((unit for suffix, unit in TEXT_SUFFIXES if setting.name.endswith(suffix)), "text")
    if setting.reader in ("integer", "number"):
        unit = unit or ("integer" if setting.reader == "integer" else "number")
        if setting.reader == "number" and unit == "seconds":
            unit = "seconds (decimals allowed)"
    return unit


def _bounds(setting: Setting) -> str:
    if setting.minimum and setting.maximum:
        return f"{setting.minimum} to {setting.maximum}"
    if setting.minimum:
        return f"at least {setting.minimum}"
    return f"at most {setting.maximum}" if setting.maximum else ""


def load_descriptions(path: Path = DESCRIPTIONS) -> list[dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check(settings: dict[str, Setting], sections: list[dict]) -> None:
    """Raise SettingsDrift naming every setting read without an entry, and every entry naming none read."""
    described: dict[str, int] = {}
    external = set()
    for section in sections:
        for entry in section["settings"]:
            for name in entry["names"]:
                described[name] = described.get(name, 0) + 1
                if entry.get("read_by"):
                    external.add(name)
    problems = [f"{setting.name} ({setting.where}) has no entry in docs/hooks/settings.yml"
                for setting in settings.values() if setting.name not in described]
    problems += [f"{name} is described in docs/hooks/settings.yml but the code reads no such setting"
                 for name in described if name not in settings and name not in external]
    problems += [f"{name} is described {count} times in docs/hooks/settings.yml"
                 for name, count in described.items() if count > 1]
    problems += [f"{name} is marked read_by but the code reads it ({settings[name].where})"
                 for name in external if name in settings]
    if problems:
        raise SettingsDrift("the settings reference does not match the code:\n  " + "\n  ".join(problems))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(repository: Path = REPOSITORY, descriptions: Path = DESCRIPTIONS) -> str:
    """The page's tables, one section each: setting, default, unit and range, what it does and when to change it."""
    settings, sections, image = read_settings(repository), load_descriptions(descriptions), image_values(repository)
    check(settings, sections)
    out = []
    for section in sections:
        out += [f"## {section['section']}", ""]
        if section.get("intro"):
            out += [" ".join(section["intro"].split()), ""]
        out += ["| setting | default | unit, values | what it does; when to change it |", "|---|---|---|---|"]
        for entry in section["settings"]:
            names, defaults, units = [], [], []
            for name in entry["names"]:
                setting = settings.get(name)
                names.append(f"`{name}`" + (f", also read as `{setting.old_name}`"
                                            if setting and setting.old_name else ""))
                if setting is None:  # read by a library, not by our code
                    continue
                default = setting.default
                if name in image and f"`{image[name]}`" != default:
                    default += f" (the image: `{image[name]}`)"
                defaults.append(default)
                unit = _unit(setting)
                bounds = _bounds(setting)
                units.append(f"{unit}, {bounds}" if unit and bounds else unit or bounds)
            if entry.get("default") and defaults and not any("(computed)" in default for default in defaults):
                names = ", ".join(entry["names"])
                raise SettingsDrift(f"{names}: the code's default is plain ({', '.join(defaults)}); "
                                    "say more with default_note, not default")
            default_cell = entry.get("default") or ", ".join(defaults)
            if entry.get("default_note"):
                default_cell += f"; {entry['default_note']}"
            unit_cell = entry.get("unit") or "; ".join(dict.fromkeys(unit for unit in units if unit))
            out.append(f"| {', '.join(names)} | {_cell(default_cell)} | {_cell(unit_cell)} | {_cell(entry['text'])} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs' hook
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise SettingsDrift(f"docs/{PAGE} lost its marker {MARKER!r}")
    try:
        return markdown.replace(MARKER, render())
    except SettingsDrift as error:
        from mkdocs.exceptions import PluginError

        raise PluginError(str(error)) from None
