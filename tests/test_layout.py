"""The package stays readable: files <= 450 lines, functions <= 60 lines unless a `# long: why` comment says why,
pytest imported only under pytest_neuronprobe/pytest/, and the README's "Project layout" names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_neuronprobe"
README = PACKAGE.parent / "README.md"
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=_rel)
def test_file_and_functions_are_short(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{_rel(path)} has {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assert node.end_lineno is not None
        length = node.end_lineno - node.lineno + 1
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[first - 2].strip() if first >= 2 else ""
        assert length <= MAX_FUNCTION_LINES or above.startswith("# long:"), (
            f"{_rel(path)}:{node.lineno} {node.name} has {length} lines and no '# long: why' comment above it"
        )


def test_only_the_pytest_layer_imports_pytest() -> None:
    offenders = []
    for path in MODULES:
        if _rel(path).startswith("pytest/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{_rel(path)}: {n}" for n in names if n.split(".")[0] in ("pytest", "_pytest", "xdist")]
    assert not offenders


def test_readme_project_layout_names_every_module() -> None:
    section = README.read_text(encoding="utf-8").split("## Project layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"[a-z_]+\.py|[a-z_]+/", section))
    missing = []
    for path in MODULES:
        if path.name == "__init__.py" and path.parent != PACKAGE:
            if f"{path.parent.name}/" not in named:
                missing.append(_rel(path.parent) + "/")
        elif path.name not in named:
            missing.append(_rel(path))
    assert not missing, f"README 'Project layout' does not mention: {', '.join(sorted(set(missing)))}"
