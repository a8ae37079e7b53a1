"""The docs cannot drift: README.md's and docs/api.md's curl examples run, top to bottom, against
a fresh chatproxy and give the answers they show; every route has an example; every setting is
documented; the README's test set-up is what CI runs; every link between the docs resolves.

How an example is written, so that it runs and is checked: tests/doc_examples.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
from tornado.web import RequestHandler

from tests.doc_examples import ADDRESS, ANY_OBJECT, ROOT, answer_problem, bash_blocks, examples, script, shape_problem
from tests.fake_lmstudio import Reply

RUN_DOCS = ("README.md", "docs/api.md")
DOCS_MODEL = "docs-model"  # what the fake LM Studio offers: an example that names another model fails
CURLRC = 'fail-with-body\nmax-time = 30\nnoproxy = "*"\n'
SCRIPT_TIMEOUT_S = 120


def refuse_unknown_models(fake) -> None:
    """As LM Studio without the model: 404, so an example that names a model it lacks fails."""
    fake.models = [DOCS_MODEL]

    def check(body: dict) -> None:
        if body.get("model") not in fake.models:
            fake.script.appendleft(Reply(status=404, error=f"Model '{body.get('model')}' not found"))

    fake.on_request = check


def files_a_reader_brings(folder: Path) -> None:
    """The import examples upload a chat file of the original server and ChatGPT's export (one
    conversation, and one it cannot read)."""
    seed_chat = {"model": "neural-chat:latest", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}],
                 "temperature": 0.7, "max_tokens": -1, "created_at": "2025-01-15T10:30:00.123456", "updated_at": "2025-01-15T10:31:00.654321"}
    (folder / "old-chat.json").write_text(json.dumps(seed_chat))
    said = [("user", "Name a colour"), ("assistant", "Blue")]
    ids = ["root"] + [f"node{number}" for number in range(len(said))]
    mapping = {ids[0]: {"id": ids[0], "message": None, "parent": None, "children": [ids[1]]}}
    for number, (role, text) in enumerate(said, 1):
        message = {"id": ids[number], "author": {"role": role}, "content": {"content_type": "text", "parts": [text]}}
        mapping[ids[number]] = {"id": ids[number], "message": message, "parent": ids[number - 1], "children": ids[number + 1 : number + 2]}
    conversations = [{"title": "Colours", "mapping": mapping, "current_node": ids[-1]}, {"title": "Broken", "mapping": {}}]
    (folder / "conversations.json").write_text(json.dumps(conversations))


@pytest.mark.gen_test(timeout=SCRIPT_TIMEOUT_S + 10)
@pytest.mark.parametrize("doc", RUN_DOCS)
async def test_curl_examples_run_top_to_bottom_and_answer_as_shown(proxy, fake, tmp_path, doc):
    found = examples(doc)
    assert any(example.shown for example in found), f"{doc} shows no answer to check"
    refuse_unknown_models(fake)
    work = tmp_path / "work"
    work.mkdir()
    files_a_reader_brings(work)
    (work / ".curlrc").write_text(CURLRC)
    environ = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    environ["CURL_HOME"] = str(work)
    process = await asyncio.create_subprocess_exec("bash", "-c", script(found, proxy), cwd=work, env=environ)
    try:
        await asyncio.wait_for(process.wait(), SCRIPT_TIMEOUT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    problems = []
    for number, example in enumerate(found):
        output = (work / f"out.{number}").read_text()
        problem = answer_problem(example, int((work / f"rc.{number}").read_text()), output)
        if problem:
            errors = (work / f"err.{number}").read_text()[-500:]
            problems.append(f"{example.where}\n  {problem}\n  answer: {output[:1500]!r}\n  stderr: {errors!r}")
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize(
    "shown, actual, differs",
    [
        ({"a": 1, "b": ["x"]}, {"a": 2.5, "b": ["y", "z"]}, False),
        ({"a": 1}, {"a": 1, "extra": True}, True),
        ({"a": 1}, {"a": "1"}, True),
        ({"a": []}, {"a": [1]}, True),
        ({"a": [{"k": 1}]}, {"a": []}, True),
        ({"a": ANY_OBJECT}, {"a": {"anything": [1]}}, False),
        ({"a": ANY_OBJECT}, {"a": None}, True),
        ({"a": [{"k": 1}, {"k": 1, "j": "s"}]}, {"a": [{"k": 1, "j": "t"}, {"k": 0}]}, False),
        ({"a": True}, {"a": 1}, True),
    ],
)
def test_the_shape_check_tells_apart_what_it_must(shown, actual, differs):
    assert (shape_problem(shown, actual) is not None) == differs


# -- routes, settings, the test set-up, links ---------------------------------------------------


def example_calls(doc: str) -> set[tuple[str, str]]:
    calls = set()
    for example in examples(doc):
        method = re.search(r"-X (\w+)", example.command)
        sends = re.search(r" (-d|--data-binary) ", example.command)
        for path in re.findall(re.escape(ADDRESS) + r"(/[^\s'\"?]*)", example.command):
            calls.add((method.group(1) if method else "POST" if sends else "GET", path))
    return calls


def test_every_route_and_method_has_a_curl_example_in_the_api_docs():
    from handlers import routes
    from handlers.page import PageHandler, StaticHandler

    calls = example_calls("docs/api.md")
    for pattern, handler, *_ in routes(services=None):
        if handler in (PageHandler, StaticHandler):
            continue
        paths = {path for _, path in calls if re.fullmatch(pattern, path)}
        assert paths, f"docs/api.md has no curl example of {pattern}"
        if pattern.endswith("(.*)"):
            continue  # a pass-through forwards every method: one example shows it
        methods = [m for m in ("get", "post", "put", "patch", "delete") if getattr(handler, m) is not getattr(RequestHandler, m)]
        for method in methods:
            assert any((method.upper(), path) in calls for path in paths), f"docs/api.md has no curl example of {method.upper()} {pattern}"


def rendered_default(value) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_is_in_the_configuration_docs_and_config_toml():
    from config import SETTINGS, Config

    reference = (ROOT / "docs/configuration.md").read_text()
    toml = (ROOT / "config.toml").read_text()
    toml_keys, section = set(), None
    for line in toml.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = header.group(1)
        elif key := re.match(r"(?:# )?(\w+) = ", line):  # a key without a default is shown commented out
            toml_keys.add(f"{section}.{key.group(1)}")
    for setting in SETTINGS:
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{setting.key}` |")), None)
        assert row, f"docs/configuration.md has no row for {setting.key}"
        default = row.split("|")[4].strip().strip("`")
        assert default == rendered_default(getattr(Config(), setting.field)), (setting.key, default)
        assert setting.key in toml_keys, f"config.toml does not show {setting.key}"
        for name in (setting.env, setting.flag):
            if name:
                assert f"`{name}`" in row, (setting.key, name)
                assert name in toml, f"config.toml does not name {name}"


def test_ci_runs_the_readmes_test_set_up():
    block = next(line for _, lines in bash_blocks((ROOT / "README.md").read_text()) for line in lines if "python -m pytest" in line)
    steps = [step.strip() for step in block.split("&&")]
    ci = (ROOT / ".ci/run").read_text()
    ci_lines = {line.strip() for line in ci.splitlines()}
    for step in steps:
        if step.startswith("sudo apt-get install"):
            assert "apt-get install" in ci
            for package in [word for word in step.split()[3:] if not word.startswith("-")]:
                # .ci/run installs only what is missing: each package goes on the list it installs
                assert re.search(rf"(missing\+=\(|apt-get install .*){package}\b", ci), f".ci/run does not install {package}"
        elif step.startswith("sudo "):
            assert step.removeprefix("sudo ") in ci, step
        else:
            assert step in ci_lines, f".ci/run does not run {step!r}"


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))])
def test_links_between_the_docs_resolve(doc):
    source = ROOT / doc
    for target, fragment in re.findall(r"\]\((?!https?:|mailto:)([^)#\s]*)(?:#([^)\s]*))?\)", source.read_text()):
        path = (source.parent / target).resolve() if target else source
        assert path.exists(), f"{doc}: link to {target} which does not exist"
        if fragment:
            prose = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)  # a "# " in a code block is no heading
            headings = re.findall(r"^#+ (.+)$", prose, re.M)
            assert fragment in {anchor(heading) for heading in headings}, f"{doc}: no heading #{fragment} in {path.name}"
