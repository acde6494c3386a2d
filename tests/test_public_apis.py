"""The package, the Hydra plugins and the scripts use other packages' public APIs only: no `hydra._internal`, no
`_private` module or name of another package (they change without notice between releases)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["dps_exp", "hydra_plugins", "scripts"]
OURS = {"dps_exp", "hydra_plugins.dps_exp_sweeper", "tests"}

# Being replaced on another branch; remove each line once that is merged (the test then keeps them out).
KNOWN: set[tuple[str, str]] = set()


def private(dotted: str) -> bool:
    """Whether a dotted name has a `_private` part (dunders such as `__future__` are not private)."""
    return any(part.startswith("_") and not part.endswith("__") for part in dotted.split("."))


def ours(module: str) -> bool:
    if (ROOT / "scripts" / f"{module}.py").exists():  # the scripts import each other by name
        return True
    return any(module == m or module.startswith(f"{m}.") for m in OURS)


def private_uses(path: Path) -> list[str]:
    """`import a._b`, `from a._b import c`, `from a import _b`, and `a._b` for a module imported as `a`, of
    another package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: dict[str, str] = {}  # local name -> module, for `import a.b` / `import a.b as c`
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not ours(alias.name):
                    top = alias.name.split(".")[0]  # `import a.b` binds `a`; `import a.b as c` binds a.b
                    modules[alias.asname or top] = alias.name if alias.asname else top
                    found += [alias.name] if private(alias.name) else []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and not ours(node.module):
            found += [f"{node.module}.{a.name}" for a in node.names if private(f"{node.module}.{a.name}")]
    for node in ast.walk(tree):
        module = (
            modules.get(node.value.id) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) else None
        )
        if module is not None and private(node.attr):
            found.append(f"{module}.{node.attr}")
    return found


def test_no_private_api_of_another_package_is_used():
    uses = {
        (str(path.relative_to(ROOT)), use)
        for folder in SOURCES
        for path in sorted((ROOT / folder).rglob("*.py"))
        for use in private_uses(path)
    }
    assert uses - KNOWN == set(), "private APIs used (file, name)"
    assert KNOWN - uses == set(), "listed as known but no longer used: remove them from KNOWN"


def test_the_check_sees_each_form(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "import hydra._internal.utils\nfrom hydra._internal.config_loader_impl import get_overrides_dirname\n"
        "from torch import _dynamo\nimport torch\nimport numpy as np\nx = torch._foreach_lerp_\ny = np._private\n"
        "from __future__ import annotations\nimport os\nz = os.path.__name__\nfrom dps_exp import _hidden\n"
    )
    assert private_uses(source) == [
        "hydra._internal.utils",
        "hydra._internal.config_loader_impl.get_overrides_dirname",
        "torch._dynamo",
        "torch._foreach_lerp_",
        "numpy._private",
    ]


def test_a_deprecation_raised_in_our_code_fails_the_tests():
    """pyproject's filterwarnings: a DeprecationWarning at a call of ours is an error, another package's is
    shown (not hidden); only the third-party ones named there are ignored."""
    import warnings

    import pytest

    with pytest.raises(DeprecationWarning, match="old call"):
        warnings.warn_explicit("old call", DeprecationWarning, "loggers.py", 1, module="dps_exp.run.loggers")
    with pytest.warns(DeprecationWarning, match="their old call"):
        warnings.warn_explicit("their old call", DeprecationWarning, "x.py", 1, module="somepackage.x")
