"""Every relative link and image in README.md (and the study report it shows) names a
file that git tracks, so a fresh clone shows what the README promises."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def _tracked_files() -> set[str]:
    result = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return set(result.stdout.splitlines())


def _relative_targets(markdown: Path) -> list[str]:
    targets = []
    for target in LINK.findall(markdown.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (markdown.parent / target.split("#")[0]).resolve().relative_to(ROOT)
        targets.append(path.as_posix())
    return targets


DOCUMENTS = ["README.md", "docs/study/report.md", "docs/study/plan-runs.md",
             *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_relative_link_is_a_tracked_file(document):
    tracked = _tracked_files()
    assert document in tracked
    targets = _relative_targets(ROOT / document)
    missing = [target for target in targets if target not in tracked]
    assert not missing, f"{document} links files git does not track: {missing}"


def test_the_readme_shows_the_study_figures():
    assert any(target.startswith("docs/study/figures/") for target in _relative_targets(ROOT / "README.md"))


def test_the_readme_stays_short():
    """What it is, the two set-up commands, a tour, the commands, the layout: the rest
    lives in docs/ (issue 26)."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
