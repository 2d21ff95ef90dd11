"""The layout drawn in docs/architecture.md is the tree: every package folder and module of
qaq_assets is named there, and every module it names exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "qaq_assets"


def _drawn_layout() -> str:
    text = (REPO / "docs" / "architecture.md").read_text()
    return re.search(r"```\n(qaq_assets/.*?)```", text, re.DOTALL).group(1)


def _modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" and "__pycache__" not in p.parts]


def test_every_module_and_folder_of_the_package_is_in_the_drawn_layout():
    drawn = _drawn_layout()
    named = set(re.findall(r"[A-Za-z_]\w*(?=\.py\b)", drawn))
    folders = set(re.findall(r"([A-Za-z_]\w*)/", drawn))
    missing_modules = sorted(str(p.relative_to(REPO)) for p in _modules() if p.stem not in named)
    missing_folders = sorted(
        str(p.relative_to(REPO))
        for p in PACKAGE.rglob("*")
        if p.is_dir() and p.name != "__pycache__" and p.name not in folders
    )
    assert not missing_modules, f"docs/architecture.md's layout does not name {missing_modules}"
    assert not missing_folders, f"docs/architecture.md's layout does not name {missing_folders}"


def test_every_module_the_drawn_layout_names_exists():
    existing = {p.stem for p in _modules()}
    named = set(re.findall(r"[A-Za-z_]\w*(?=\.py\b)", _drawn_layout().split("qaq_assets_tests/")[0]))
    assert named <= existing, f"docs/architecture.md names modules that do not exist: {sorted(named - existing)}"


def test_the_ci_entry_point_is_valid_shell_and_runs_the_readme_test_command():
    """A broken .ci/run fails every submission after 0 s; bash -n catches it here first."""
    import subprocess

    script = REPO / ".ci" / "run"
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    commands = [
        line.strip() for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert "make test" in (REPO / "README.md").read_text()
