from pathlib import Path

import pytest

from pipeline import codehash


def write(root: Path, name: str, text: str) -> None:
    path = root.joinpath(*name.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.parents:
        if parent == root:
            break
        (parent / "__init__.py").touch()
    path.write_text(text)


@pytest.fixture
def tree(tmp_path):
    codehash._module_digest.cache_clear()
    write(tmp_path, "stages.train", "from studies.fam import model\n\ndef run(ctx):\n    return model.f(1)\n")
    write(tmp_path, "studies.fam.model", 'def f(x):\n    """Double."""\n    return 2 * x  # doubled\n')
    yield tmp_path
    codehash._module_digest.cache_clear()


def digests(root):
    codehash._module_digest.cache_clear()
    return codehash.code_digests(("stages.train",), root)


def test_imports_of_project_modules_are_followed(tree):
    assert set(digests(tree)) == {"stages.train", "studies.fam", "studies.fam.model"}


def test_fingerprint_ignores_comments_docstrings_and_formatting(tree):
    before = digests(tree)
    write(tree, "studies.fam.model", 'def f( x ):\n    """A new docstring."""\n\n    # new comment\n    return 2*x\n')
    assert digests(tree) == before


def test_a_real_edit_two_imports_away_changes_the_fingerprint(tree):
    before = digests(tree)
    write(tree, "studies.fam.model", "def f(x):\n    return 3 * x\n")
    after = digests(tree)
    assert after["studies.fam.model"] != before["studies.fam.model"]
    assert after["stages.train"] == before["stages.train"]


def test_missing_module_is_an_error(tmp_path):
    with pytest.raises(ModuleNotFoundError, match="no project module"):
        codehash.module_path("stages.nothing", tmp_path)
