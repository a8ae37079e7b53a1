"""The curl examples of the docs: reading them, running them in one script, and comparing each
answer with the one the docs show (tests/test_readme.py runs them against a fresh chatproxy).

How an example is written (the rule for whoever adds a route):
- In a ```bash block, a command whose first word is ``curl`` (or ``NAME=$(curl ...)``) runs; a
  line ending in ``\\`` goes on in the next. Other commands (installs, the server) do not run.
- The comment lines right under a command, when the first starts with ``# {`` or ``# [``, are the
  JSON answer it shows: the answer must have the same keys and the same kinds of values (not the
  same values), and the same ``status``. ``{…}`` stands for any object, ``[…]`` for any list.
  ``# data: ...`` lines show a stream: its first and last events, ``# …`` for those between.
- Each runs with ``--fail-with-body`` (from a curlrc): an answer of 400 or more fails the example
  unless the answer shown has ``"status": "error"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "localhost:8080"
ANY_OBJECT, ANY_LIST = "<any object>", "<any list>"
HTTP_ERROR_EXIT = 22  # curl's exit status for an HTTP answer >= 400 under --fail-with-body


@dataclass
class Example:
    doc: str
    line: int
    command: str
    shown: list[str]  # the comment lines under it that show its answer, without "# "

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}: {self.command}"


# -- reading the examples ----------------------------------------------------------------------


def bash_blocks(text: str) -> list[tuple[int, list[str]]]:
    """The ```bash blocks of a Markdown text: (line number of the block's first line, its lines)."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if current is None and stripped == "```bash":
            current, start = [], number + 1
        elif current is not None and stripped == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(stripped)
    return blocks


def runs(command: str) -> bool:
    return command.startswith("curl ") or re.match(r"[A-Za-z_]\w*=\$\(curl ", command) is not None


def examples(doc: str) -> list[Example]:
    found = []
    for start, lines in bash_blocks((ROOT / doc).read_text()):
        index = 0
        while index < len(lines):
            line, first = lines[index], start + index
            index += 1
            if not line or line.startswith("#"):
                continue
            parts = [line]
            while parts[-1].endswith("\\") and index < len(lines):
                parts[-1] = parts[-1][:-1].rstrip()
                parts.append(lines[index])
                index += 1
            shown, index = shown_answer(lines, index)
            command = " ".join(parts)
            if runs(command):
                found.append(Example(doc, first, command, shown))
    return found


def shown_answer(lines: list[str], index: int) -> tuple[list[str], int]:
    """The answer shown under a command: a JSON value over as many comment lines as it takes,
    or a stream's ``data:`` lines."""
    if index >= len(lines) or not lines[index].startswith(("# {", "# [", "# data:")):
        return [], index
    shown = []
    while index < len(lines) and lines[index].startswith("#"):
        text = lines[index].removeprefix("#").strip()
        if lines[index].startswith("# data:") or (shown and shown[0].startswith("data:")):
            if not (text.startswith("data:") or text == "…"):
                break
        shown.append(text)
        index += 1
        if not shown[0].startswith("data:") and parse_shown(" ".join(shown)) is not None:
            break
    return shown, index


def parse_shown(text: str):
    try:
        return json.loads(text.replace("{…}", json.dumps(ANY_OBJECT)).replace("[…]", json.dumps(ANY_LIST)))
    except ValueError:
        return None


# -- comparing an answer with the one shown ----------------------------------------------------


def kind(value) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape_problem(shown, actual, path: str = "answer") -> str | None:
    """None when ``actual`` has the keys and kinds of values ``shown`` has, else what differs."""
    if shown == ANY_OBJECT or shown == ANY_LIST:
        wanted = dict if shown == ANY_OBJECT else list
        return None if isinstance(actual, wanted) else f"{path}: shown as {shown}, is {actual!r}"
    if kind(shown) != kind(actual):
        return f"{path}: shown as a {kind(shown)}, is {actual!r}"
    if isinstance(shown, dict):
        if set(shown) != set(actual):
            return f"{path}: keys shown {sorted(shown)}, answered {sorted(actual)}"
        for key in shown:
            problem = shape_problem(shown[key], actual[key], f"{path}.{key}")
            if problem:
                return problem
    if isinstance(shown, list):
        if bool(shown) != bool(actual):
            return f"{path}: shown {'empty' if not shown else 'with items'}, answered {actual!r}"
        for number, item in enumerate(actual):
            problems = [shape_problem(option, item, f"{path}[{number}]") for option in shown]
            if all(problems):
                return problems[min(number, len(shown) - 1)]
    return None


def answer_problem(example: Example, exit_status: int, output: str) -> str | None:
    if not example.shown:
        return None if exit_status == 0 else f"curl exited {exit_status}"
    if example.shown[0].startswith("data:"):
        return stream_problem(example.shown, exit_status, output)
    shown = parse_shown(" ".join(example.shown))
    if shown is None:
        return f"the answer shown is not JSON: {' '.join(example.shown)}"
    documented_error = isinstance(shown, dict) and shown.get("status") == "error"
    if exit_status != (HTTP_ERROR_EXIT if documented_error else 0):
        return f"curl exited {exit_status}"
    try:
        actual = json.loads(output)
    except ValueError:
        return "the answer is not JSON"
    if isinstance(shown, dict) and "status" in shown and actual.get("status") != shown["status"]:
        return f"status {actual.get('status')!r}, shown {shown['status']!r}"
    return shape_problem(shown, actual)


def stream_problem(shown_lines: list[str], exit_status: int, output: str) -> str | None:
    if exit_status != 0:
        return f"curl exited {exit_status}"
    events = [line.removeprefix("data: ") for line in output.splitlines() if line.startswith("data: ")]
    shown = [line.removeprefix("data:").strip() for line in shown_lines if line.startswith("data:")]
    if not events:
        return "no event in the stream"
    for place, event in ((0, events[0]), (-1, events[-1])):
        if shown[place] == "[DONE]" or event == "[DONE]":
            if shown[place] != event:
                return f"event {place}: {event!r}, shown {shown[place]!r}"
            continue
        problem = shape_problem(parse_shown(shown[place]), json.loads(event), f"event {place}")
        if problem:
            return problem
    return None


# -- running them --------------------------------------------------------------------------------


def script(found: list[Example], proxy: str) -> str:
    """One bash script, so a variable set by one example is there for the next; each example's
    answer, errors and exit status go to files of its own."""
    address = proxy.removeprefix("http://")
    lines = ["set -o pipefail"]
    for number, example in enumerate(found):
        lines.append("{ " + example.command.replace(ADDRESS, address))
        lines.append(f"}} > out.{number} 2> err.{number}; echo $? > rc.{number}")
    return "\n".join(lines) + "\n"
