"""Docs that cannot go stale silently: the flag reference, the agents, files and commands the docs name, and the
commands README shows."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT

from pathwise.agents.registry import AGENTS
from pathwise.cli import build_parser, flag_reference

README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
SCRIPTS = ("train.py", "evaluate.py", "export.py", "plot.py", "sweep.py")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_flag_reference_is_current_and_lists_every_flag_of_each_agent():
    text = (ROOT / "docs" / "flags.md").read_text()
    assert text == flag_reference(), "docs/flags.md is stale: python -m pathwise.cli > docs/flags.md"
    for name in AGENTS:
        spelled = {s for action in build_parser(name)._actions for s in action.option_strings if s.startswith("--")}
        assert {s for s in spelled if f"`{s}" not in text and f"/ {s}`" not in text} == {"--help"}, name


def test_every_agent_file_and_command_is_in_readme_and_the_architecture():
    for name in AGENTS:
        assert f"`{name}`" in README and f"`{name}.py`" in ARCHITECTURE, name
    files = [p for folder in ("agents", "envs", "pathwise", "pathwise/speed") for p in (ROOT / folder).glob("*.py")]
    for path in files:
        if path.name != "__init__.py":
            assert f"`{path.name}`" in ARCHITECTURE, f"docs/architecture.md does not name {path.relative_to(ROOT)}"
    commands = [f"pathwise-{s.removesuffix('.py')}" for s in SCRIPTS]
    for command in (*SCRIPTS, *commands):
        assert f"`{command}`" in README and f"`{command}`" in ARCHITECTURE, command


def readme_commands() -> list[list[str]]:
    lines = [line.split("  #")[0].strip() for block in code_blocks(README, "bash") for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(("python ", "make "))]


def test_readme_shows_each_script_and_both_make_targets():
    shown = {words[1] for words in readme_commands()}
    assert {"train.py", "evaluate.py", "export.py", "plot.py", "train", "test"} <= shown, shown
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M)
    for words in readme_commands():
        if words[0] == "make":
            assert words[1] in targets, words


@pytest.mark.parametrize("words", [w for w in readme_commands() if w[0] == "python"], ids=" ".join)
def test_each_readme_command_uses_flags_its_help_lists(words):
    script, args = words[1], words[2:]
    chosen = ("--env", "--agent")
    context = [a for i, a in enumerate(args) if a in chosen or i > 0 and args[i - 1] in chosen]
    if script == "train.py" and "--resume" in args:
        context = []  # a resumed run's help is the plain one
    out = subprocess.run([sys.executable, str(ROOT / script), *context, "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", out.stdout))
    used = {a.split("=")[0] for a in args if a.startswith("--")}
    assert used <= listed, f"{' '.join(words)}: {sorted(used - listed)} not in {script} --help"


def test_readme_python_imports_what_exists():
    for block in code_blocks(README, "python"):
        imports = "\n".join(line for line in block.splitlines() if line.startswith(("from ", "import ")))
        compile(block, "README.md", "exec")
        exec(imports, {})


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))])
def test_each_link_to_a_file_or_heading_of_the_checkout_leads_somewhere(doc):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{doc}: {target} does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{doc}: no heading of {linked.name} has the anchor {anchor}"
