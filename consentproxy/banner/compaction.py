"""Our scripts as served: comments and indentation out, lines kept.

Every page loads the banner and the guard; their comments are for us. Only
what is certainly a comment goes: the header block, whole comment lines and a
trailing `// …` whose text holds no quote, slash or backtick (so it is no
string's or regular expression's part). Lines stay lines, so no semicolon is
inserted or lost. Tests check each served script with `node --check` and
compare its tokens with the source's.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"\A/\*.*?\*/\n", re.S)
_TRAILING = re.compile(r"\s+// [^'\"/`]*$")


def compact_script(source: str) -> str:
    lines = (_TRAILING.sub("", line).strip() for line in _HEADER.sub("", source).split("\n"))
    return "".join(f"{line}\n" for line in lines if line and not line.startswith("//"))
