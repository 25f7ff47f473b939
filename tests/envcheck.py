"""Checks for the per-rule conda environments in envs/ (used by tests/test_envs.py).

Each check is a small function that returns the problems it finds (an empty list: none):

* ``workflow_rules``: which rules use which env file, asked of Snakemake itself;
* ``pin_problems``: an env's pins disagree with requirements/lock.txt, or something is unpinned;
* ``closure_problems``: pip would install a dependency the env does not pin;
* ``import_problems``: an env lacks a third-party package its rules' scripts import (``trace_script`` follows a
  script's imports through src/asrcompress, inside functions too);
* ``no_deps_problems``: a package installed ``--no-deps`` imports something the env does not have.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
SRC = REPO / "src"
LOCK = REPO / "requirements" / "lock.txt"
PACKAGE = "asrcompress"

# conda packages that are build tools rather than Python dependencies: not in lock.txt, pinned all the same.
CONDA_TOOLS = {
    "pip": "installs the pip: section",
    "cxx-compiler": "conda-forge's C++ compiler: builds the kenlm module and KenLM's programs against the env",
    "make": "the build tool CMake drives",
    "cmake": "configures KenLM's programs",
    "libboost-devel": "the Boost headers and libraries lmplz links against",
    "zlib": "compression libraries KenLM links when it finds them (else the system's would be found)",
    "bzip2": "as zlib",
    "xz": "as zlib (liblzma)",
}
# The one pip option an env may carry: PyTorch's CPU wheels, for the families that run on CPU.
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIP_OPTIONS = {f"--extra-index-url {CPU_INDEX}"}
# What a +cpu torch wheel does not pull in, though the CUDA wheel installed in the venv declares it.
CUDA_ONLY = re.compile(r"nvidia-.*|triton")
# Imports a rule's script never needs from its env: the script preamble appends the running Snakemake's sys.path.
PROVIDED = {"snakemake"}


def canonical(name: str) -> str:
    """PEP 503 name: case and runs of -, _ and . do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """The version without its local tag (``2.9.1+cpu`` -> ``2.9.1``)."""
    return version.split("+", 1)[0]


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """canonical name -> version of every ``name==version`` line."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path}: not an exact pin: {line!r}")
            pins[canonical(name)] = version.strip()
    return pins


# ----------------------------------------------------------------------------------------------
# Env files


@dataclasses.dataclass
class Env:
    path: Path
    name: str
    channels: list[str]
    conda: list[str]  # the conda dependencies as written ("python=3.11")
    pip: list[str]  # the pip: section as written
    post_deploy: Path | None  # <env>.post-deploy.sh beside the env file, where Snakemake looks for it

    @property
    def pip_pins(self) -> dict[str, str]:
        """canonical name -> version of every ``name==version`` line of the pip section."""
        return dict(parse_pin(line) for line in self.pip if not line.startswith("-") and "==" in line)

    @property
    def post_deploy_pins(self) -> dict[str, str]:
        return dict(post_deploy_installs(self.post_deploy.read_text())) if self.post_deploy else {}

    @property
    def installed(self) -> set[str]:
        """Canonical names of every distribution pip puts into the env (env file and post-deploy script)."""
        return set(self.pip_pins) | set(self.post_deploy_pins)


class EnvFileError(ValueError):
    pass


def post_deploy_path(env_file: Path) -> Path:
    """Where Snakemake looks for an env's post-deploy script: the env file's .yaml replaced."""
    return Path(env_file).with_name(Path(env_file).name.removesuffix(".yaml") + ".post-deploy.sh")


def load_env(path: Path) -> Env:
    """An env file, its structure checked: name, channels, dependencies (strings and at most one pip: list)."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise EnvFileError(f"{path}: not a YAML mapping")
    missing = [key for key in ("name", "channels", "dependencies") if not data.get(key)]
    if missing:
        raise EnvFileError(f"{path}: missing {', '.join(missing)}")
    if not isinstance(data["channels"], list) or not isinstance(data["dependencies"], list):
        raise EnvFileError(f"{path}: channels and dependencies must be lists")
    conda: list[str] = []
    pip: list[str] | None = None
    for dep in data["dependencies"]:
        if isinstance(dep, str):
            conda.append(dep)
        elif isinstance(dep, dict) and list(dep) == ["pip"] and isinstance(dep["pip"], list) and pip is None:
            pip = [str(line) for line in dep["pip"]]
        else:
            raise EnvFileError(f"{path}: unexpected dependency entry {dep!r}")
    script = post_deploy_path(path)
    return Env(Path(path), str(data["name"]), [str(c) for c in data["channels"]], conda, pip or [],
               script if script.exists() else None)


def parse_pin(line: str) -> tuple[str, str]:
    name, _, version = line.partition("==")
    return canonical(name.strip()), version.strip()


def parse_conda_dep(dep: str) -> tuple[str, str | None]:
    """``python=3.11`` -> ("python", "3.11"); a dependency without a plain ``=``/``==`` version has none."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([A-Za-z0-9_.+!]+?)(\.\*)?", dep.strip())
    if match:
        return canonical(match.group(1)), match.group(2)
    return canonical(re.split(r"[<>=!~ ]", dep.strip(), maxsplit=1)[0]), None


def _commands(script: str) -> Iterator[list[str]]:
    """The words of each non-comment line of a shell script that runs ``pip install``."""
    for line in script.splitlines():
        code = line.split("#", 1)[0]
        if re.search(r"\bpip\b.*\binstall\b", code):
            yield shlex.split(code)


def post_deploy_installs(script: str) -> Iterator[tuple[str, str]]:
    """(name, version) of every ``name==version`` a post-deploy script hands to ``pip install``."""
    for words in _commands(script):
        for word in words:
            if re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", word):
                yield parse_pin(word)


def post_deploy_no_deps(env: Env) -> set[str]:
    """Canonical names the env's post-deploy script installs with ``--no-deps``."""
    if not env.post_deploy:
        return set()
    return {parse_pin(word)[0] for words in _commands(env.post_deploy.read_text()) if "--no-deps" in words
            for word in words if re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", word)}


def pin_problems(env: Env, lock: Mapping[str, str], python: str) -> list[str]:
    """Every way ``env``'s pins disagree with ``lock`` and with the venv's ``python`` (major.minor), and every
    dependency it leaves unpinned."""
    problems = []
    where = env.path.name
    conda_names = [parse_conda_dep(dep)[0] for dep in env.conda]
    if "python" not in conda_names:
        problems.append(f"{where}: no python among the conda dependencies")
    if len(set(conda_names)) != len(conda_names):
        problems.append(f"{where}: a conda dependency is listed twice")
    for dep in env.conda:
        name, version = parse_conda_dep(dep)
        if version is None:
            problems.append(f"{where}: conda dependency {dep!r} is not pinned (name=version)")
        elif name == "python":
            if version != python:
                problems.append(f"{where}: python={version}, but the venv (and so Snakemake) runs Python {python}")
        elif name in lock:
            locked = public(lock[name])
            if locked != version and not locked.startswith(version + "."):
                problems.append(f"{where}: conda {dep!r} disagrees with lock.txt ({name}=={lock[name]})")
        elif name not in CONDA_TOOLS:
            problems.append(f"{where}: conda dependency {dep!r} is neither in lock.txt nor a known build tool")
    seen: set[str] = set()
    cpu_wheels = False
    for line in env.pip:
        if line.startswith("-"):
            if line not in PIP_OPTIONS:
                problems.append(f"{where}: unexpected pip option {line!r}")
            continue
        if not re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.!+-]+", line):
            problems.append(f"{where}: pip requirement {line!r} is not an exact name==version pin")
            continue
        name, version = parse_pin(line)
        if name in seen:
            problems.append(f"{where}: {name} is pinned twice")
        seen.add(name)
        cpu_wheels |= "+" in version
        if name not in lock:
            problems.append(f"{where}: {line} is not in lock.txt")
        elif public(version) != public(lock[name]):
            problems.append(f"{where}: {line} disagrees with lock.txt ({name}=={lock[name]})")
        elif "+" in version and version.split("+", 1)[1] != "cpu":
            problems.append(f"{where}: {line}: the only local tag expected is +cpu")
    if cpu_wheels and f"--extra-index-url {CPU_INDEX}" not in env.pip:
        problems.append(f"{where}: +cpu wheels pinned without --extra-index-url {CPU_INDEX}")
    if env.post_deploy:
        for name, version in env.post_deploy_pins.items():
            if name not in lock:
                problems.append(f"{env.post_deploy.name}: {name}=={version} is not in lock.txt")
            elif public(version) != public(lock[name]):
                problems.append(f"{env.post_deploy.name}: {name}=={version} disagrees with lock.txt "
                                f"({name}=={lock[name]})")
            if name in seen:
                problems.append(f"{env.post_deploy.name}: {name} is installed by {where} already")
        for words in _commands(env.post_deploy.read_text()):
            names = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
            loose = [w for w in names if not re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", w)]
            if loose:
                problems.append(f"{env.post_deploy.name}: pip installs {', '.join(loose)} without name==version")
    return problems


# ----------------------------------------------------------------------------------------------
# What pip pulls in: the declared requirements of every pinned distribution, read from the venv's copy


def requirements_of(name: str, extras: Iterable[str] = ()) -> list[Requirement]:
    """The requirements of the venv's ``name`` (with ``extras``) that apply here (Linux, the venv's Python)."""
    wanted = {""} | set(extras)
    found = []
    for requirement in map(Requirement, importlib.metadata.requires(name) or []):
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in wanted):
            found.append(requirement)
    return found


def closure_problems(env: Env) -> list[str]:
    """Every distribution pip would install into ``env`` that the env does not pin, judged by the venv's
    metadata (so for Linux and the venv's Python). Packages installed ``--no-deps`` are skipped (see
    ``no_deps_problems``); a ``+cpu`` torch wheel does not pull in the CUDA runtime wheels."""
    installed = env.installed
    cpu = {name for name, version in env.pip_pins.items() if version.endswith("+cpu")}
    problems = []
    for name in sorted(installed - post_deploy_no_deps(env)):
        try:
            requirements = requirements_of(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{env.path.name}: {name} is not installed in the venv, so its requirements are unknown")
            continue
        for requirement in requirements:
            needed = canonical(requirement.name)
            if name in cpu and CUDA_ONLY.fullmatch(needed):
                continue
            if needed not in installed:
                problems.append(f"{env.path.name}: {name} requires {requirement}, which the env does not pin")
            elif requirement.extras:
                for extra in requirements_of(needed, requirement.extras):
                    if canonical(extra.name) not in installed:
                        problems.append(f"{env.path.name}: {requirement} requires {extra}, which the env does not pin")
    return problems


# ----------------------------------------------------------------------------------------------
# What the rules' scripts import


@dataclasses.dataclass(frozen=True, order=True)
class Site:
    """One import statement: in ``module`` at ``line``, inside ``function`` (None: at module level)."""

    module: str
    line: int
    function: str | None = None

    @property
    def lazy(self) -> bool:
        return self.function is not None

    def __str__(self) -> str:
        return f"{self.module}:{self.line}" + (f" (in {self.function})" if self.function else "")


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").exists() else None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, function: str | None = None) -> Iterator[tuple[ast.AST, str | None]]:
    """Every node under ``node``, with the function it sits in; ``if TYPE_CHECKING:`` bodies never run."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            for other in child.orelse:
                yield other, function
                yield from _walk(other, function)
            continue
        inner = function
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = f"{function}.{child.name}" if function else child.name
        elif isinstance(child, ast.Lambda):
            inner = function or "<lambda>"
        yield child, function
        yield from _walk(child, inner)


def _dynamic_imports(module: str, tree: ast.Module) -> list[str]:
    """Modules ``module`` imports by name at run time. The compression registry loads its method families
    with ``importlib.import_module`` (its catalogue, ``methods``, and the modules in FAMILY_MODULES); any other dynamic import stops the check until this
    function learns which modules it loads."""
    calls = [node for node, _ in _walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"}))]
    if not calls:
        return []
    if module == f"{PACKAGE}.compression.registry":
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FAMILY_MODULES" for t in node.targets):
                families = ast.literal_eval(node.value)
                return [f"{PACKAGE}.compression.{name}" for name in ("methods", *families)]
    raise AssertionError(f"{module}:{calls[0].lineno}: a dynamic import the env check cannot follow; "
                         "teach tests/envcheck.py:_dynamic_imports which modules it loads")


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[tuple[str, Site]]:
    """(imported module, site) of every import in ``source`` (the code of ``module``), relative imports
    resolved; ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule)."""
    tree = ast.parse(source, filename=module)
    package = module if is_package else module.rpartition(".")[0]
    for node, function in _walk(tree):
        site = Site(module, getattr(node, "lineno", 0), function)
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, site
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base, site
            for alias in node.names:
                yield f"{base}.{alias.name}", site
    for name in _dynamic_imports(module, tree):
        yield name, Site(module, 0, "importlib.import_module")


@functools.lru_cache(maxsize=None)
def trace_script(script: Path) -> dict[str, frozenset[Site]]:
    """Top-level name of every third-party module ``script`` can import, itself or through src/asrcompress
    (imports inside functions included, as they may run), with the import statements that do it."""
    found: dict[str, set[Site]] = {}
    seen: set[str] = set()
    todo = [(Path(script), f"scripts/{Path(script).name}")]
    while todo:
        path, module = todo.pop()
        for name, site in imports_of(path.read_text(), module, path.name == "__init__.py"):
            top = name.split(".")[0]
            if top == PACKAGE:
                parts = name.split(".")
                for end in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
                    parent = ".".join(parts[:end])
                    file = module_file(parent)
                    if file and parent not in seen:
                        seen.add(parent)
                        todo.append((file, parent))
            elif top and top not in sys.stdlib_module_names and top != "__future__" and top not in PROVIDED:
                found.setdefault(top, set()).add(site)
    return {name: frozenset(sites) for name, sites in found.items()}


@functools.lru_cache(maxsize=None)
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(import_name: str) -> set[str]:
    """Canonical names of the venv's distributions that provide the top-level module ``import_name``."""
    return {canonical(d) for d in _packages_distributions().get(import_name, [])}


def import_problems(env: Env, imports: Mapping[str, Iterable[Site]],
                    exempt: Mapping[str, str] | None = None) -> list[str]:
    """Every import in ``imports`` that ``env`` does not install. An ``exempt`` import (name -> why) may be
    missing only while every statement that reaches it sits inside a function: a module-level one always runs."""
    exempt = exempt or {}
    problems = []
    for name, sites in sorted(imports.items()):
        sites = sorted(sites)
        listed = ", ".join(map(str, sites))
        dists = distributions_of(name)
        if not dists:
            problems.append(f"{env.path.name}: no distribution in the venv provides `import {name}` (at {listed})")
        elif not dists & env.installed:
            eager = [site for site in sites if not site.lazy]
            if name in exempt and not eager:
                continue
            because = (f"; exempt ({exempt[name]}) but imported at module level at {', '.join(map(str, eager))}"
                       if name in exempt else "")
            problems.append(f"{env.path.name}: lacks {'/'.join(sorted(dists))} for `import {name}` "
                            f"(at {listed}){because}")
    return problems


def distribution_imports(name: str) -> dict[str, set[str]]:
    """Top-level third-party modules the venv's installed distribution ``name`` imports -> its files doing so."""
    files = importlib.metadata.files(name) or []
    own = {str(f).split("/")[0].removesuffix(".py") for f in files}
    found: dict[str, set[str]] = {}
    for file in files:
        if file.suffix == ".py" and ".dist-info" not in str(file):
            module = str(file).removesuffix(".py").replace("/", ".")
            for imported, _ in imports_of(Path(file.locate()).read_text(), module, file.name == "__init__.py"):
                top = imported.split(".")[0]
                if top and top not in own and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(file))
    return found


def no_deps_problems(env: Env, optional: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Every module a ``--no-deps`` install imports that ``env`` lacks, unless ``optional[dist][module]`` says why
    it need not be there."""
    problems = []
    for dist in sorted(post_deploy_no_deps(env)):
        for module, files in sorted(distribution_imports(dist).items()):
            if module in optional.get(dist, {}):
                continue
            if not distributions_of(module) & env.installed:
                problems.append(f"{env.path.name}: {dist} (installed --no-deps) imports {module} "
                                f"({', '.join(sorted(files))}), which the env does not install")
    return problems


# ----------------------------------------------------------------------------------------------
# The rules, from Snakemake


_RULES_PROGRAM = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.iocontainers import Wildcards
from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings
from snakemake.sourcecache import infer_source_file

repo, configfiles = Path(sys.argv[1]), [Path(p).absolute() for p in sys.argv[2:]]
rules = {}
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, dryrun=True, enable_file_logging=False)) as api:
    workflow_api = api.workflow(resource_settings=ResourceSettings(), snakefile=repo / "Snakefile", workdir=repo,
                                config_settings=ConfigSettings(configfiles=configfiles))
    workflow = workflow_api._workflow  # the parsed Snakefile with its rules (no DAG is built)
    for rule in workflow.rules:
        spec = rule.expand_conda_env(Wildcards())  # how a job resolves its conda: directive
        env = post_deploy = None
        if spec is not None:
            env = spec.file.get_path_or_uri(secret_free=True)
            found = spec.get_conda_env(workflow, envs_dir="/nonexistent").post_deploy_file  # as Snakemake finds it
            post_deploy = found.get_path_or_uri(secret_free=True) if found else None
        script = None
        if rule.is_script:
            script = infer_source_file(rule.script, rule.basedir).get_path_or_uri(secret_free=True)
        rules[rule.name] = {"env": env, "post_deploy": post_deploy, "script": script, "run": rule.is_run,
                            "external": rule.is_shell or rule.is_script or rule.is_notebook or rule.is_wrapper}
print("RULES-JSON " + json.dumps(rules))
"""


def workflow_rules(configfiles: Iterable[Path] = ()) -> dict[str, dict]:
    """rule name -> {env, post_deploy, script, run, external} for the workflow Snakemake's API loads from the
    Snakefile with ``configfiles`` (none: the demo config). Runs in a subprocess, since loading the Snakefile
    changes sys.path, PYTHONPATH and Snakemake's logging."""
    done = subprocess.run([sys.executable, "-c", _RULES_PROGRAM, str(REPO), *map(str, configfiles)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    for line in done.stdout.splitlines():
        if line.startswith("RULES-JSON "):
            return json.loads(line.removeprefix("RULES-JSON "))
    raise AssertionError(f"loading the Snakefile failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
