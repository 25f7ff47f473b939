"""The conda environments of envs/ (``snakemake --software-deployment-method conda``): every rule names one, the
pins agree with requirements/lock.txt, and each env holds what its rules' scripts import. No conda, no network."""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from envcheck import (ENVS, REPO, Env, Site, closure_problems, import_problems, imports_of, load_env,
                      no_deps_problems, pin_problems, read_lock, trace_script, workflow_rules)

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
WHOLE_PROJECT_ENV = "asrcompress.yaml"  # one env with everything, for users who want one; used by no rule

# Imports a family's rules can reach only inside functions they never call, left out of that env on purpose.
# The check still fails if any of them is imported at module level on the way.
EXEMPT = {
    "report.yaml": {
        "transformers": "builds and loads models (models, compression.store/distillation/downsampling): "
                        "fetch_model, finetune, compress, decode",
        "huggingface_hub": "models.fetch_pretrained: rule fetch_model",
        "pyctcdecode": "search.beam_search: rule decode",
        "torchao": "quantization kernels: rules compress and decode",
        "torchaudio": "resampling and mixing (audio.resample_wave, conditions.mix, compression modules): "
                      "the gallery reads its audio at the corpus rate",
        "scipy": "conditions.reverberate: building test conditions (rule augment)",
        "pyroomacoustics": "banks.simulate_rir/build_rir_bank: rule rir_bank",
        "espeakng_loader": "corpora.espeak synthesis: rules demo_corpus and noise_bank",
        "onnx": "deploy.export_onnx/onnx_weight_bytes (compression.store, export): rules compress and export_onnx",
        "onnxruntime": "deploy sessions and int8 quantization: rules compress, export_onnx and decode",
    },
}
# Modules a --no-deps install imports that its env need not have.
NO_DEPS_OPTIONAL = {
    "pyctcdecode": {
        "huggingface_hub": "only BeamSearchDecoderCTC.load_from_hf_hub",
        "importlib_metadata": "fallback for Python < 3.8",
    },
}


def catalog_study() -> Path:
    """A study config with a catalog corpus: its workflow has the rules the demo's lacks (prepare_split)."""
    for path in sorted((REPO / "config" / "studies").glob("*.yaml")):
        if yaml.safe_load(path.read_text()).get("corpus", {}).get("kind") == "catalog":
            return path
    pytest.fail("no catalog study config in config/studies")


@pytest.fixture(scope="module")
def rules() -> dict[str, dict]:
    """Every rule of the demo workflow and of a catalog study's, as Snakemake's API loads them."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        demo, study = pool.map(workflow_rules, [[], [catalog_study()]])
    for name in demo.keys() & study.keys():
        assert demo[name] == study[name], f"rule {name} differs between the demo and the study config"
    return {**demo, **study}


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return read_lock()


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def families(rules: dict[str, dict]) -> dict[Path, list[str]]:
    """env file -> the rules that use it."""
    grouped: dict[Path, list[str]] = {}
    for name, rule in rules.items():
        if rule["env"]:
            grouped.setdefault(Path(rule["env"]).resolve(), []).append(name)
    return grouped


def family_imports(rules: dict[str, dict], names: list[str]) -> dict[str, set[Site]]:
    imports: dict[str, set[Site]] = {}
    for name in names:
        if not rules[name]["script"]:  # a shell: rule imports nothing of ours
            continue
        for module, sites in trace_script(Path(rules[name]["script"])).items():
            imports.setdefault(module, set()).update(sites)
    return imports


# ----------------------------------------------------------------------------------------------
# (a) every rule names an env file that exists


def test_both_workflows_were_loaded(rules):
    assert {"demo_corpus", "prepare_split", "decode", "language_model", "plot"} <= rules.keys()


def test_every_rule_that_runs_something_names_an_existing_env(rules):
    for name, rule in rules.items():
        assert not rule["run"], f"rule {name} uses run:, which cannot have a conda env"
        if not rule["external"]:
            assert rule["env"] is None, f"rule {name} runs nothing but names an env"
            continue
        assert rule["env"], f"rule {name} names no conda env"
        env = Path(rule["env"]).resolve()
        assert env.is_file(), f"rule {name}: {env} does not exist"
        assert env.parent == ENVS and env.name != WHOLE_PROJECT_ENV, f"rule {name}: {env} is not a family env"
        assert not rule["script"] or Path(rule["script"]).is_file(), f"rule {name}: script {rule['script']} missing"


def test_every_family_env_is_used_and_snakemake_finds_its_post_deploy_script(rules):
    grouped = families(rules)
    assert {p.name for p in grouped} == {p.name for p in env_files()} - {WHOLE_PROJECT_ENV}
    for name, rule in rules.items():
        if rule["env"]:
            expected = load_env(Path(rule["env"]).resolve()).post_deploy
            found = Path(rule["post_deploy"]).resolve() if rule["post_deploy"] else None
            assert found == expected, f"rule {name}: Snakemake finds post-deploy {found}, expected {expected}"
    assert {p.name for p in ENVS.glob("*.post-deploy.sh")} == {"torch.post-deploy.sh", "lm.post-deploy.sh"}


def test_readme_lists_each_rule_with_its_env(rules):
    readme = (ENVS / "README.md").read_text().splitlines()
    for env, names in families(rules).items():
        rows = [line for line in readme if line.startswith("|") and f"`{env.name}`" in line]
        assert len(rows) == 1, f"envs/README.md: want one table row for {env.name}"
        for name in names:
            assert f"`{name}`" in rows[0], f"envs/README.md: rule {name} missing from the {env.name} row"


# ----------------------------------------------------------------------------------------------
# (b) env files parse; (c) their pins agree with lock.txt and the venv's Python


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_env_file_parses(path):
    env = load_env(path)
    assert env.name and env.channels[0] == "conda-forge"
    assert any(dep.startswith("python") for dep in env.conda) and env.pip


def test_env_names_are_distinct():
    names = [load_env(path).name for path in env_files()]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_pins_agree_with_lock_and_python(path, lock):
    assert pin_problems(load_env(path), lock, PYTHON) == []


def test_family_envs_pin_everything_pip_installs(rules):
    for env in families(rules):
        assert closure_problems(load_env(env)) == []


def test_cpu_families_use_cpu_torch_and_the_gpu_family_the_cuda_build(rules):
    for env_path, names in families(rules).items():
        env = load_env(env_path)
        torch = env.pip_pins.get("torch")
        if "decode" in names:
            assert torch == read_lock()["torch"] and "nvidia-cudnn-cu12" in env.pip_pins
        elif torch:
            assert torch.endswith("+cpu") and not any(name.startswith("nvidia-") for name in env.pip_pins)


# ----------------------------------------------------------------------------------------------
# (d) each family env holds every third-party module its rules' scripts can import


def test_family_envs_cover_their_rules_imports(rules):
    for env_path, names in families(rules).items():
        env = load_env(env_path)
        assert import_problems(env, family_imports(rules, names), EXEMPT.get(env_path.name)) == []


def test_exemptions_are_still_needed(rules):
    """An exemption names something the family reaches and its env lacks; otherwise it is stale."""
    grouped = {env.name: names for env, names in families(rules).items()}
    for env_name, exempt in EXEMPT.items():
        imports = family_imports(rules, grouped[env_name])
        for module in exempt:
            assert module in imports, f"{env_name}: exemption {module} is no longer reached: drop it"
            assert import_problems(load_env(ENVS / env_name), {module: imports[module]}) != [], \
                f"{env_name}: installs exempt {module}: drop the exemption"


def test_no_deps_installs_have_what_they_import(rules):
    for env in families(rules):
        assert no_deps_problems(load_env(env), NO_DEPS_OPTIONAL) == []


def test_the_trace_follows_the_library_and_the_registry():
    decode = trace_script(REPO / "scripts" / "decode.py")
    assert {"torch", "numpy", "pyctcdecode", "transformers"} <= decode.keys()
    assert any(s.function == "beam_search" for s in decode["pyctcdecode"])
    # torchao is imported only by a method module that the registry loads with importlib
    compress = trace_script(REPO / "scripts" / "compress.py")
    assert any(s.module == "asrcompress.compression.quantization" for s in compress["torchao"])
    assert set(trace_script(REPO / "scripts" / "config_snapshot.py")) == {"yaml"}


# ----------------------------------------------------------------------------------------------
# (e) post-deploy scripts


@pytest.mark.parametrize("path", sorted(ENVS.glob("*.post-deploy.sh")), ids=lambda p: p.name)
def test_post_deploy_script_is_valid_sh_beside_its_env(path):
    assert (ENVS / path.name.replace(".post-deploy.sh", ".yaml")).is_file()
    assert path.read_text().startswith("#!/usr/bin/env sh\n")  # Snakemake runs the shebang's interpreter
    done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Snakemake runs a copy in .snakemake/conda/ from the workflow's working directory: only paths relative to
    # the repository root reach the repository, and only build_kenlm.sh is needed from it.
    code = [line.split("#", 1)[0] for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    for word in ("scripts/", "src/", "requirements/", "$0", "dirname"):
        assert not any(word in line for line in code), f"{path.name} uses {word}"
    assert not any("envs/" in line and "envs/build_kenlm.sh" not in line for line in code), path.name
    assert "$CONDA_PREFIX" in path.read_text() or "${CONDA_PREFIX" in path.read_text()


def test_lm_post_deploy_builds_with_build_kenlm_from_the_working_directory(tmp_path):
    script = (ENVS / "lm.post-deploy.sh").read_text()
    assert 'sh "$BUILD" "$CONDA_PREFIX/bin"' in script and "BUILD=envs/build_kenlm.sh" in script
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    elsewhere = subprocess.run(["sh", str(ENVS / "lm.post-deploy.sh")], cwd=tmp_path, capture_output=True, text=True,
                               env={"PATH": "/usr/bin:/bin", "CONDA_PREFIX": str(prefix)})
    assert elsewhere.returncode != 0 and "run Snakemake from the repository root" in elsewhere.stderr


def test_post_deploy_runs_in_a_fake_env(tmp_path):
    """torch.post-deploy.sh against a fake $CONDA_PREFIX whose python only records what it is asked to do."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    log = tmp_path / "calls"
    fake = prefix / "bin" / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", str(ENVS / "torch.post-deploy.sh")], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "CONDA_PREFIX": str(prefix)})
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[:2] == ["-m pip install --no-deps kenlm==0.3.0", "-m pip install --no-deps pyctcdecode==0.5.0"]
    assert subprocess.run(["sh", str(ENVS / "torch.post-deploy.sh")], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True).returncode != 0, "must refuse to run outside an env"


# ----------------------------------------------------------------------------------------------
# The checks catch what they are for


def altered(tmp_path: Path, name: str, old: str, new: str) -> Env:
    """A copy of envs/<name> with ``old`` replaced (and its post-deploy script beside it)."""
    text = (ENVS / name).read_text()
    assert old in text, f"{old!r} not in {name}"
    (tmp_path / name).write_text(text.replace(old, new, 1))
    script = ENVS / name.replace(".yaml", ".post-deploy.sh")
    if script.exists():
        shutil.copy(script, tmp_path / script.name)
    return load_env(tmp_path / name)


def report_problems(tmp_path: Path, lock: dict[str, str], old: str, new: str, name: str = "report.yaml") -> str:
    return "\n".join(pin_problems(altered(tmp_path, name, old, new), lock, PYTHON))


def test_pin_check_catches_a_wrong_pin(tmp_path, lock):
    assert "numpy==2.4.5 disagrees" in report_problems(tmp_path, lock, "numpy==2.4.6", "numpy==2.4.5")
    assert "disagrees" not in report_problems(tmp_path, lock, "numpy==2.4.6", "numpy==2.4.6")


def test_pin_check_catches_loose_and_unknown_pins(tmp_path, lock):
    assert "not an exact" in report_problems(tmp_path, lock, "numpy==2.4.6", "numpy>=2")
    assert "not in lock" in report_problems(tmp_path, lock, "numpy==2.4.6", "nmupy==2.4.6")
    assert "not pinned" in report_problems(tmp_path, lock, "pip=25", "pip")
    assert "neither in lock" in report_problems(tmp_path, lock, "pip=25", "pip=25\n  - ffmpeg=7")
    assert "pinned twice" in report_problems(tmp_path, lock, "numpy==2.4.6", "numpy==2.4.6\n      - NumPy==2.4.6")


def test_pin_check_catches_another_python_and_a_missing_cpu_index(tmp_path, lock):
    assert "python=3.12" in report_problems(tmp_path, lock, "python=3.11", "python=3.12", "data.yaml")
    env = altered(tmp_path, "data.yaml", "      - --extra-index-url https://download.pytorch.org/whl/cpu\n", "")
    assert any("without --extra-index-url" in p for p in pin_problems(env, lock, PYTHON))


def test_pin_check_catches_a_wrong_post_deploy_pin(tmp_path, lock):
    env = altered(tmp_path, "torch.yaml", "name:", "name:")
    env.post_deploy.write_text(env.post_deploy.read_text().replace("pyctcdecode==0.5.0", "pyctcdecode==0.4.0"))
    assert any("pyctcdecode==0.4.0 disagrees" in p for p in pin_problems(env, lock, PYTHON))


def test_closure_check_catches_an_unpinned_dependency(tmp_path):
    env = altered(tmp_path, "report.yaml", "      - kiwisolver==1.5.1\n", "")
    assert any("matplotlib requires kiwisolver" in p for p in closure_problems(env))


def test_import_check_catches_a_missing_package(tmp_path, rules):
    env = altered(tmp_path, "data.yaml", "      - pyroomacoustics==0.10.1\n", "")
    problems = import_problems(env, family_imports(rules, families(rules)[ENVS / "data.yaml"]))
    assert any("import pyroomacoustics" in p for p in problems)


def test_import_check_catches_an_exempt_module_imported_at_module_level():
    env = load_env(ENVS / "report.yaml")
    lazy = {"pyctcdecode": {Site("asrcompress.search", 79, "beam_search")}}
    assert import_problems(env, lazy, EXEMPT["report.yaml"]) == []
    eager = {"pyctcdecode": {Site("asrcompress.search", 79, "beam_search"), Site("asrcompress.search", 12)}}
    assert any("imported at module level" in p for p in import_problems(env, eager, EXEMPT["report.yaml"]))


def test_no_deps_check_catches_a_missing_import(tmp_path):
    env = altered(tmp_path, "torch.yaml", "      - pygtrie==2.6.2\n", "")
    assert any("imports pygtrie" in p for p in no_deps_problems(env, NO_DEPS_OPTIONAL))


def test_trace_refuses_an_unknown_dynamic_import():
    with pytest.raises(AssertionError, match="dynamic import"):
        list(imports_of("import importlib\nimportlib.import_module('x')\n", "asrcompress.other"))
