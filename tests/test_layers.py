"""The import contract: each layer of src/paddle_llm_bench imports only the layers below it.

Every import counts, including the ones inside functions (a lazy import is still an arrow). The layers,
lowest first (docs/development.md, "Layout", says what each holds):

    core      pure logic: no Paddle, no pytest, no plotting, no files
    results   saved runs and baselines on disk          -> core
    runtime   Paddle and the device                     -> core
    analysis  saved runs read back, tables and plots    -> core, results
    paired    interleaved A/B in worker processes       -> all of the above
    envs      other Pythons: per-version environments   -> all of the above
    glue      cli, plugin and the subcommand front ends -> anything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "paddle_llm_bench"
GLUE = "glue"
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "results": {"core"},
    "runtime": {"core"},
    "analysis": {"core", "results"},
    "paired": {"core", "results", "runtime", "analysis"},
    "envs": {"core", "results", "runtime", "analysis", "paired"},
    GLUE: {"core", "results", "runtime", "analysis", "paired", "envs"},
}
# Third-party packages a layer must not import, even lazily: what keeps it light and testable.
FORBIDDEN_PACKAGES: dict[str, set[str]] = {
    "core": {"paddle", "paddlenlp", "pytest", "pytest_benchmark", "pynvml", "matplotlib", "psutil"},
    "results": {"paddle", "paddlenlp", "pynvml", "matplotlib"},
    "analysis": {"paddle", "paddlenlp", "pytest", "pynvml"},
}


def layer_of(module: str) -> str:
    """``paddle_llm_bench.core.gate`` -> ``core``; a top-level module (cli, plugin, ...) is glue."""
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ALLOWED else GLUE


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool = False) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level third-party names) that ``module``'s source imports anywhere."""
    own: set[str] = set()
    external: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                names = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            (own if name.split(".")[0] == "paddle_llm_bench" else external).add(name)
    return {name for name in own if name != "paddle_llm_bench"}, {name.split(".")[0] for name in external}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer_and_every_layer_exists() -> None:
    layers = {layer_of(module_name(path)) for path in MODULES}
    assert layers == set(ALLOWED), f"layers found {sorted(layers)}, declared {sorted(ALLOWED)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_follow_the_layers(path: Path) -> None:
    source = module_name(path)
    layer = layer_of(source)
    own, external = imports_of(path.read_text(encoding="utf-8"), source, path.name == "__init__.py")
    wrong = sorted(
        f"{source} ({layer}) imports {target} ({layer_of(target)})"
        for target in own
        if layer_of(target) != layer and layer_of(target) not in ALLOWED[layer]
    )
    banned = sorted(external & FORBIDDEN_PACKAGES.get(layer, set()))
    assert not wrong, "wrong arrows:\n" + "\n".join(wrong)
    assert not banned, f"{source} ({layer}) imports {', '.join(banned)}, which the {layer} layer must not"


def test_the_contract_catches_a_wrong_arrow() -> None:
    """The checker itself: a lazy import of the runtime and of Paddle inside a core module is seen."""
    source = "def f():\n    from ..runtime.device import Device\n    import paddle.device\n"
    own, external = imports_of(source, "paddle_llm_bench.core.bad")
    assert own == {"paddle_llm_bench.runtime.device"} and external == {"paddle"}
    assert layer_of("paddle_llm_bench.runtime.device") not in ALLOWED[layer_of("paddle_llm_bench.core.bad")]
    assert "paddle" in FORBIDDEN_PACKAGES["core"]
