"""Docs that cannot go stale silently: the flag reference, the agents, files and commands the docs name, and the
commands README shows."""

import re
import shlex
import subprocess
import sys

import pytest
from conftest import ROOT
from pathwise.agents.registry import AGENTS

from pathwise.cli import flag_reference

README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
SCRIPTS = ("train.py", "evaluate.py", "export.py", "plot.py", "sweep.py")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_flag_reference_is_current():
    assert (ROOT / "docs" / "flags.md").read_text() == flag_reference(), \
        "docs/flags.md is stale: python -m pathwise.cli > docs/flags.md"


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
    context = [a for i, a in enumerate(args) if a in ("--env", "--agent") or args[i - 1] in ("--env", "--agent")]
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
