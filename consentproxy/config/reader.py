"""Walking a parsed TOML table while collecting every problem as FILE: KEY: REASON."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.reason}"


class ConfigError(Exception):
    """One or more problems in a configuration; `str()` lists them all."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Reader:
    """Walks one table, remembering the key path and collecting problems."""

    def __init__(self, file: str, problems: list[Problem], table: dict[str, Any], path: str) -> None:
        self.file = file
        self.problems = problems
        self.table = table
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, reason: str) -> None:
        self.problems.append(Problem(self.file, self.key(name), reason))

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self.seen.add(name)
        if name not in self.table:
            return default
        value = self.table[name]
        if isinstance(value, bool) and kind is not bool and (not isinstance(kind, tuple) or bool not in kind):
            self.problem(name, f"expected {_kind_name(kind)}, got a boolean")
            return default
        if not isinstance(value, kind):
            self.problem(name, f"expected {_kind_name(kind)}, got {describe(value)}")
            return default
        return value  # type: ignore[return-value]

    def converted(self, name: str, default: T, convert: Callable[[Any], T]) -> T:
        """Read a value and convert it; `convert` raises ValueError with the reason."""
        self.seen.add(name)
        if name not in self.table:
            return default
        try:
            return convert(self.table[name])
        except ValueError as exc:
            self.problem(name, str(exc))
            return default

    def sub(self, name: str) -> Reader | None:
        table = self.get(name, dict, None)
        if table is None:
            return None
        return Reader(self.file, self.problems, table, self.key(name))

    def finish(self) -> None:
        """Report every key that no reader asked for: typos must not pass silently."""
        known = self.seen
        for name in self.table:
            if name not in known:
                hint = difflib.get_close_matches(name, sorted(known), n=1)
                suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.problem(name, f"unknown key{suffix}; {valid_keys(known)}")


def valid_keys(known: set[str]) -> str:
    """The keys a table takes, named where the typo is, so nobody has to read the loader to find them."""
    return f"valid keys here: {', '.join(sorted(known))}" if known else "this table takes no keys"


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def list_of(reader: Reader, name: str, convert: Callable[[Any], T], default: tuple[T, ...]) -> tuple[T, ...]:
    reader.seen.add(name)
    if name not in reader.table:
        return default
    raw = reader.table[name]
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        reader.problem(name, f"expected a list, got {describe(raw)}")
        return default
    out: list[T] = []
    for index, item in enumerate(raw):
        try:
            out.append(convert(item))
        except ValueError as exc:
            reader.problem(f"{name}[{index}]", str(exc))
    return tuple(out)




def one_of(*options: str) -> Callable[[Any], str]:
    """A converter that accepts exactly one of `options`."""
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {describe(value)}")
        return str(value)

    return convert
