"""The configuration as documented is the configuration as loaded (issue 20 item 2).

`consentproxy/config/schema.py` lists every table and key with its default.
Here it is held against the loader itself (which keys each table's reader
asks for, and what the documented defaults load as), against
`config/consentproxy.example.toml` and against the README's configuration
reference. A key the loader takes that one of them lacks, or a default that
differs, fails a test naming it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consentproxy.config import reader as reader_module
from consentproxy.config.loader import config_from_dict
from consentproxy.config.model import Config
from consentproxy.config.schema import ROOT_KEYS, TABLES, Key, Table, table

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "consentproxy.example.toml"
README = ROOT / "README.md"
SITE = {"hosts": ["s.example"], "upstream": "http://127.0.0.1:9"}
#: what an array-of-tables entry needs besides the key under test
ENTRY = {
    "server.admin_tokens[]": {"name": "dpo", "scope": "read", "sha256": "0" * 63 + "1"},
    "trackers.lists[]": {"format": "tds", "path": "x.json"},
    "sites.NAME.cookies[]": {"name": "x", "category": "necessary"},
    "sites.NAME.services[]": {"name": "X", "category": "marketing"},
}
#: keys that exclude each other: one is given in the entry above
EXCLUSIVE = {("sites.NAME.cookies[]", "prefix"), ("sites.NAME.cookies[]", "pattern")}


def _value(key: Key) -> object:
    return key.default if key.default is not None else key.example


def _document(path: str, values: dict[str, object]) -> dict[str, Any]:
    """A minimal valid configuration with `values` in the table at `path` (NAME → s, ID → marketing)."""
    data: dict[str, Any] = {"sites": {"s": dict(SITE)}}
    parts = path.replace("NAME", "s").replace("ID", "marketing").split(".")
    array = parts[-1].endswith("[]")
    parts[-1] = parts[-1].removesuffix("[]")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if array:
        entry = {**ENTRY.get(path, {}), **values}
        node.setdefault(parts[-1], []).append(entry)
    else:
        node.setdefault(parts[-1], {}).update(values)
    return data


def _load(data: dict[str, Any], tmp: Path) -> Config:
    return config_from_dict(data, "c.toml", tmp)


def _fixed_tables() -> Iterator[Table]:
    return (t for t in TABLES if not t.open_keys)


def _normalise(path: str) -> str:
    path = re.sub(r"\[\d+\]", "[]", path)
    path = re.sub(r"^sites\.[^.]+", "sites.NAME", path)
    return re.sub(r"^(sites\.NAME\.consent\.categories)\.[^.]+$", r"\1.ID", path)


def _every_table_document() -> dict[str, Any]:
    """Every fixed table with every key (its default, else its example), as one configuration."""
    data: dict[str, Any] = {"geoip": {}, "sites": {"s": dict(SITE)}}
    for t in _fixed_tables():
        values = {k.name: _value(k) for k in t.keys if (t.path, k.name) not in EXCLUSIVE}
        merged = _document(t.path, values)
        _merge(data, merged)
    return data


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for name, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _merge(into[name], value)
        elif name not in into or isinstance(value, list):
            into[name] = value


def test_the_schema_lists_exactly_the_keys_the_loader_asks_for(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """Each reader's `seen` (every key it asked for) is recorded while a document with every table loads."""
    seen: dict[str, set[str]] = {}
    original = reader_module.Reader.finish

    def recording(self: reader_module.Reader) -> None:
        seen.setdefault(_normalise(self.path), set()).update(self.seen)
        original(self)

    monkeypatch.setattr(reader_module.Reader, "finish", recording)
    _load(_every_table_document(), tmp_path)
    assert seen.pop("") == set(ROOT_KEYS)
    for t in TABLES:
        if t.open_keys:
            seen.pop(t.path, None)
            continue
        documented = {k.name for k in t.keys} | set(t.children)
        assert seen.pop(t.path) == documented, f"[{t.path}]: the loader and schema.py disagree"
    assert not seen, f"tables the loader reads that schema.py does not list: {sorted(seen)}"


@pytest.mark.parametrize(("path", "name"), [(t.path, k.name) for t in _fixed_tables() for k in t.keys])
def test_each_documented_default_is_what_the_loader_uses(tmp_path: Path, path: str, name: str) -> None:
    """Writing a key with its documented default changes nothing; a key without one takes its example."""
    key = table(path).key(name)
    without = _load(_document(path, {}), tmp_path)
    if key.default is None:
        assert key.unset and key.example is not None, f"{path}.{name}: no default, so it needs `unset` and `example`"
        if (path, name) in EXCLUSIVE:
            entry = {k: v for k, v in ENTRY[path].items() if k != "name"}
            data = _document(path, {})
            data["sites"]["s"]["cookies"] = [{**entry, name: key.example}]
            _load(data, tmp_path)
        else:
            _load(_document(path, {name: key.example}), tmp_path)  # the example is valid
        return
    assert _load(_document(path, {name: key.default}), tmp_path) == without, f"{path}.{name}"


# --- the example file ------------------------------------------------------------------------------------------

_COMMENTED_SETTING = re.compile(r"^#(?=\[|[a-z_0-9]+ = )", re.MULTILINE)


def _uncommented(text: str) -> str:
    """The example with every `#key = value` and `#[table]` line in force (prose stays `# …`)."""
    return _COMMENTED_SETTING.sub("", text)


def _instances(data: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(schema path, table) for every table of a document, arrays of tables entry by entry."""
    paths = {t.path for t in TABLES}
    for name, value in data.items():
        here = _normalise(f"{path}.{name}" if path else name)
        if isinstance(value, dict) and (here in paths or here == "sites"):
            if here in paths:
                yield here, value
            yield from _instances(value, here)
        elif isinstance(value, list) and f"{here}[]" in paths:
            for item in value:
                yield f"{here}[]", item
                yield from _instances(item, f"{here}[]")


def test_the_example_loads_as_it_is_and_with_every_setting_in_force(tmp_path: Path) -> None:
    text = EXAMPLE.read_text("utf-8")
    _load(tomllib.loads(text), tmp_path)
    _load(tomllib.loads(_uncommented(text)), tmp_path)


def test_the_example_has_every_table_and_key_with_its_default_and_a_comment() -> None:
    text = EXAMPLE.read_text("utf-8")
    found: dict[str, list[dict[str, Any]]] = {}
    for path, values in _instances(tomllib.loads(_uncommented(text))):
        found.setdefault(path, []).append(values)
    problems = []
    for t in TABLES:
        if t.path not in found:
            problems.append(f"{t.toml_header} is missing")
            continue
        if t.open_keys:
            continue
        keys = {name for values in found[t.path] for name in values} - set(t.children)
        problems += [f"{t.toml_header} {name}: missing" for name in sorted({k.name for k in t.keys} - keys)]
        problems += [f"{t.toml_header} {name}: not in schema.py" for name in sorted(keys - {k.name for k in t.keys})]
        for key in t.keys:
            values = [values[key.name] for values in found[t.path] if key.name in values]
            if key.default is not None and values and key.default not in values:
                problems.append(f"{t.toml_header} {key.name}: shows {values}, the default is {key.default!r}")
    lines = _uncommented(text).splitlines()
    for t in _fixed_tables():
        for key in t.keys:
            commented = any(re.match(rf"{key.name} = .+ # \S", line) or (re.match(rf"{key.name} = ", line)
                            and index > 0 and lines[index - 1].startswith("# "))
                            for index, line in enumerate(lines))
            if not commented:
                problems.append(f"{t.toml_header} {key.name}: no one-line comment")
    assert not problems, "config/consentproxy.example.toml:\n" + "\n".join(problems)


def test_the_example_marks_keys_without_a_default() -> None:
    """A key with no default is either required or shown commented out, with what happens without it."""
    text = EXAMPLE.read_text("utf-8")
    for t in _fixed_tables():
        for key in t.keys:
            if key.default is None and key.unset not in ("required", "empty") and not key.unset.startswith("one of"):
                lines = [line for line in text.splitlines() if re.match(rf"#?{key.name} = ", line)]
                assert any("default:" in line or line.startswith("#") for line in lines), (t.path, key.name)


# --- the README's configuration reference ----------------------------------------------------------------------


def _reference() -> dict[str, list[tuple[str, str]]]:
    """Heading's table header (`[server]`, `[[sites.NAME.cookies]]`) → the (key, default) rows under it."""
    text = README.read_text("utf-8")
    section = text.split("\n## Configuration reference\n", 1)[1].split("\n## ", 1)[0]
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in section.splitlines():
        if heading := re.match(r"### `(\[\[?[A-Za-z_.]+\]\]?)`", line):
            current = found.setdefault(heading.group(1), [])
        elif line.startswith("### "):
            current = None
        elif current is not None and (row := re.match(r"\| `([a-z_0-9]+)` \| (.*?) \|", line)):
            current.append((row.group(1), row.group(2)))
    return found


def _cell_value(cell: str) -> object:
    """A default cell as a value: `30s` and `"client"` are strings, `[]` a list, `1` an int."""
    bare = cell.strip().strip("`")
    try:
        return tomllib.loads(f"v = {bare}")["v"]
    except tomllib.TOMLDecodeError:
        return bare


def test_the_readme_reference_has_every_table_and_key_with_its_default() -> None:
    reference = _reference()
    problems = []
    for t in TABLES:
        header = t.toml_header.replace("[]", "")
        if header not in reference:
            problems.append(f"no ### `{header}` heading")
            continue
        rows = dict(reference[header])
        names = {k.name for k in t.keys}
        problems += [f"{header} {name}: not in the table" for name in sorted(names - set(rows))]
        problems += [f"{header} {name}: not in schema.py" for name in sorted(set(rows) - names)]
        for key in t.keys:
            if key.name not in rows:
                continue
            cell = rows[key.name]
            if key.default is None:
                if cell != key.unset:
                    problems.append(f"{header} {key.name}: default {cell!r}, schema.py says {key.unset!r}")
            elif _cell_value(cell) != key.default:
                problems.append(f"{header} {key.name}: default {cell!r}, the loader's is {key.default!r}")
    assert not problems, "README.md, Configuration reference:\n" + "\n".join(problems)
