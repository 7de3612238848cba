"""Code fingerprints that survive comments, docstrings and reformatting.

A stage declares the modules its code lives in; we hash their AST with docstrings
removed, and follow imports of project modules transitively, so a helper edited two
imports away still counts. Imports of ``pipeline`` are not followed: the pipeline's own
behaviour is versioned by ``fingerprint.FORMAT`` and each stage's ``version``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from pipeline import project
from pipeline.fingerprint import digest

# The checkout this package lives in (tests read the repo's files through it). Commands
# never use it: they act on the project they run in, ``project.root()``.
ROOT = Path(__file__).resolve().parent.parent
FOLLOWED = ("studies", "stages")  # top-level packages whose code is part of a fingerprint


def module_path(name: str, root: Path | None = None) -> Path:
    """File of a project module or package, found without importing it."""
    root = root or project.root()
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"no project module {name!r} under {root}")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop the leading string expression of every module, class and function body."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _imported_modules(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Project modules named by the import statements of module ``name``."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return {m for m in found if m.split(".")[0] in FOLLOWED}


SCHEDULING = ("gpus",)  # StageSpec keywords that say where a node runs, never what it computes
# StageSpec keywords that only refuse params before anything runs: for params they accept, the
# stage computes exactly what it did without them (``choices`` predates this and stays hashed)
VALIDATION = ("types", "ranges", "checks", "refers", "metrics")


def _strip_scheduling(tree: ast.AST) -> ast.AST:
    """Drop the scheduling and validation keywords of every ``StageSpec(...)`` call: pinning a
    stage to a GPU slot changes where it runs, and declaring or tightening a rule on its params
    changes which params are refused, not what an accepted node computes; neither may change a
    fingerprint (adding a rule must not rebuild every artifact it passes). A rule written as a
    named function outside the call would be hashed: write rules inline."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "StageSpec":
            node.keywords = [k for k in node.keywords if k.arg not in SCHEDULING + VALIDATION]
    return tree


@cache
def _module_digest(name: str, root: Path) -> tuple[str, frozenset[str]]:
    """(AST digest, project imports) of one module."""
    path = module_path(name, root)
    tree = _strip_scheduling(_strip_docstrings(ast.parse(path.read_text(), filename=str(path))))
    deps = set()
    for mod in _imported_modules(tree, name, path.name == "__init__.py"):
        try:
            module_path(mod, root)
            deps.add(mod)
        except ModuleNotFoundError:
            pass  # `from pkg import function`: the attribute is not a module
    return digest("module", ast.dump(tree, include_attributes=False)), frozenset(deps)


def code_digests(modules: tuple[str, ...], root: Path | None = None) -> dict[str, str]:
    """Digest of every module reachable from ``modules`` through project imports."""
    root = root or project.root()
    seen: dict[str, str] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name], deps = _module_digest(name, root)
        todo.extend(sorted(deps - seen.keys()))
    return dict(sorted(seen.items()))
