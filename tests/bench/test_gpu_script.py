"""bench/fetch_wheels.sh and bench/gpu.sh, every step a CPU can run: syntax, the pins the fetch
would ask for (training and vLLM sets), the split/verify/reassemble round trip, an offline install of
both venvs that stops at the CUDA check, and the harness accepting the arguments gpu.sh passes.
Nothing is downloaded."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import torch

from recipekit.bench import cli
from recipekit.bench.generation_speed import GEN_VARIANTS
from recipekit.bench.model_build import BenchError, check_architecture, load_text_config
from recipekit.bench.throughput import TRAIN_VARIANTS
from recipekit.paths import REPO_ROOT

FETCH = REPO_ROOT / "bench" / "fetch_wheels.sh"
GPU = REPO_ROOT / "bench" / "gpu.sh"


def _env(**extra: str) -> dict[str, str]:
    """This machine's environment without its pip settings: the scripts must not depend on them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def _run(*args, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *map(str, args)], capture_output=True, text=True, env=_env(**extra_env),
                          timeout=300)


def _requirement_lines(*paths: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for path in paths for line in path.read_text().splitlines()]
    return [line for line in lines if line]


@pytest.mark.parametrize("script", [FETCH, GPU], ids=lambda p: p.name)
def test_scripts_are_valid_bash(script):
    done = _run("-n", script)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck():
    done = subprocess.run(["shellcheck", str(FETCH), str(GPU)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def _dry_run(script: Path, *args) -> tuple[list[list[str]], list[str]]:
    """(the pins each resolve step asks for: training set, then the vLLM set, the pins reported as not
    included) of a --dry-run."""
    done = _run(script, "--dry-run", *args)
    assert done.returncode == 0, done.stderr
    resolves = [line for line in done.stdout.splitlines() if " install --dry-run " in line]
    asked = [shlex.split(resolve.split("torch-constraint.txt", 1)[1]) for resolve in resolves]
    left_out = re.findall(r"^# not included: (\S+): ", done.stdout, flags=re.M)
    return asked, left_out


def test_fetch_dry_run_asks_for_every_pin_of_the_requirement_files_but_torch():
    (asked, _), left_out = _dry_run(FETCH)
    pins = _requirement_lines(REPO_ROOT / "requirements.txt", REPO_ROOT / "requirements-gpu.txt")
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    assert sorted(asked + left_out) == sorted(p for p in pins if p != torch_pin)
    assert left_out == ["flash-attn==2.8.3", "deepspeed-kernels"]  # compiled against CUDA: built elsewhere
    done = _run(FETCH, "--dry-run", "--python-version", "3.12")
    assert f"torch held at {torch_pin}" in done.stdout
    assert "--python-version 3.12 --implementation cp --abi cp312" in done.stdout
    assert "--only-binary=:all: --platform manylinux_2_31_x86_64 --platform manylinux_2_30_x86_64" in done.stdout
    assert "wheel --no-deps --quiet --wheel-dir" in done.stdout  # a source-only package is built, then resolved
    assert done.stdout.rstrip().endswith("deepspeed-kernels: compiled against CUDA, build it there (see --source-wheels)")


def test_fetch_dry_run_resolves_every_vllm_pin_apart_into_its_own_folder(tmp_path):
    (train, vllm), left_out = _dry_run(FETCH, "--dest", tmp_path / "w")
    pins = _requirement_lines(REPO_ROOT / "requirements-vllm-cuda.txt")
    # vLLM runs on the GPU machine's torch too: the lock pins the training set's, held, not asked for
    assert "torch==2.13.0" in pins and "torch==2.13.0" in _requirement_lines(REPO_ROOT / "requirements.txt")
    assert sorted(vllm) == sorted(p for p in pins if p != "torch==2.13.0")
    assert "vllm==0.32.0" in vllm and "vllm==0.32.0" not in train and "axolotl==0.19.0" not in vllm
    assert "transformers==5.19.0" in vllm  # a pin that conflicts with Axolotl's: hence apart
    done = _run(FETCH, "--dry-run", "--dest", tmp_path / "w")
    downloads = [line for line in done.stdout.splitlines() if " download --no-deps " in line]
    assert [shlex.split(line)[shlex.split(line).index("--dest") + 1] for line in downloads] == [
        str(tmp_path / "w"), str(tmp_path / "w" / "vllm")]
    (train_alone,), left_out = _dry_run(FETCH, "--without", "vllm")
    assert train_alone == train and left_out == ["flash-attn==2.8.3", "deepspeed-kernels", "vllm"]


def test_fetch_reads_its_pins_from_the_files_and_takes_prebuilt_cuda_wheels(tmp_path):
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    shutil.copy(FETCH, repo / "bench" / FETCH.name)
    (repo / "requirements.txt").write_text("# comment\ntorch==9.9.9\nPyYAML==1.2.3  # why\n\nalpha>=1,<2\n")
    (repo / "requirements-gpu.txt").write_text("flash-attn==7.7.7\nbeta\n")
    script = repo / "bench" / FETCH.name
    done = _run(script, "--dry-run")
    assert done.returncode == 2 and "no " + str(repo / "requirements-vllm-cuda.txt") in done.stderr
    assert "--without vllm" in done.stderr
    (repo / "requirements-vllm-cuda.txt").write_text("torch==9.9.9\nVLLM==0.1\nalpha==1.5\n")
    asked, left_out = _dry_run(script)
    assert (asked, left_out) == ([["pyyaml==1.2.3", "alpha>=1,<2", "beta"], ["vllm==0.1", "alpha==1.5"]],
                                 ["flash-attn==7.7.7"])
    asked, left_out = _dry_run(script, "--source-wheels", tmp_path / "built")
    assert (asked[0], left_out) == (["pyyaml==1.2.3", "alpha>=1,<2", "flash-attn==7.7.7", "beta"], [])
    asked, left_out = _dry_run(script, "--without", "Alpha")
    assert (asked, left_out) == ([["pyyaml==1.2.3", "beta"], ["vllm==0.1"]],
                                 ["alpha>=1,<2", "flash-attn==7.7.7", "alpha==1.5"])
    (repo / "requirements-vllm-cuda.txt").write_text("torch==8.0\nvllm==0.1\n")
    done = _run(script, "--dry-run")
    assert done.returncode == 2 and "pins torch==8.0, requirements.txt torch==9.9.9" in done.stderr
    assert _dry_run(script, "--without", "vllm")[0] == [["pyyaml==1.2.3", "alpha>=1,<2", "beta"]]
    (repo / "requirements.txt").write_text("alpha\n")
    done = _run(script, "--dry-run")
    assert done.returncode == 2 and "pins no torch" in done.stderr


def _report_item(name: str, version: str, *requires: str) -> dict:
    return {"metadata": {"name": name, "version": version, "requires_dist": list(requires)}}


def test_the_plan_leaves_out_torch_and_only_the_cuda_runtime_torch_brings(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"install": [
        _report_item("torch", "2.13.0", "filelock", "nvidia-cudnn-cu12==9.1; platform_system == 'Linux'",
                     "triton==3.9.0; platform_system == 'Linux'", "sympy>=1.13"),
        _report_item("nvidia-cudnn-cu12", "9.1", "nvidia_cublas_cu12"),
        _report_item("nvidia_cublas_cu12", "12.8"),
        _report_item("triton", "3.9.0"),
        _report_item("sympy", "1.14.0"),
        _report_item("filelock", "3.20.0"),
        _report_item("vllm", "0.33.0", "torch==2.13.0", "nvidia-cutlass-dsl>=4", "triton"),
        _report_item("nvidia-cutlass-dsl", "4.2.0"),
        _report_item("Liger_Kernel", "0.8.1", "triton>=3"),
    ]}))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "wheel_plan.py"), str(plan)],
                          capture_output=True, text=True, check=True)
    # the small pure-Python requirements of torch stay: the other pins may need versions of their own
    assert done.stdout.split() == ["filelock==3.20.0", "Liger_Kernel==0.8.1", "nvidia-cutlass-dsl==4.2.0",
                                   "sympy==1.14.0", "vllm==0.33.0"]


def test_the_vllm_plan_leaves_out_torchs_cuda_stack_and_keeps_the_cuda_tools_vllm_asks_for(tmp_path):
    """The shape of the real report for requirements-vllm-cuda.txt (torch 2.13.0 from the index, vllm 0.32.0):
    torch asks cuda-toolkit for some of its extras only; vLLM's kernels bring nvcc and nvvm themselves."""
    cuda_toolkit_extra = "; sys_platform == 'linux' and extra == '{}'"
    plan = tmp_path / "plan-vllm.json"
    plan.write_text(json.dumps({"install": [
        _report_item("torch", "2.13.0", "sympy>=1.13.3",
                     'cuda-toolkit[cublas,nvrtc]==13.0.3; platform_system == "Linux"',
                     'cuda-bindings<14,>=13.0.3; platform_system == "Linux"', "triton==3.7.1"),
        _report_item("cuda-toolkit", "13.0.3.0", *(f"{dep}{cuda_toolkit_extra.format(extra)}" for dep, extra in [
            ("nvidia-cublas==13.1.1.3.*", "cublas"), ("nvidia-cuda-nvrtc==13.0.88.*", "nvrtc"),
            ("nvidia-cuda-nvcc==13.0.88.*", "nvcc"), ("nvidia-nvvm==13.0.88.*", "all")])),
        _report_item("nvidia-cublas", "13.1.1.3"),
        _report_item("nvidia-cuda-nvrtc", "13.0.88"),
        _report_item("cuda-bindings", "13.4.4", "cuda-pathfinder>=1.4.2", 'cuda-toolkit[nvvm]==13.*; extra == "all"'),
        _report_item("cuda-pathfinder", "1.9.1"),
        _report_item("triton", "3.7.1", 'cmake<4.0,>=3.20; extra == "build"'),
        _report_item("sympy", "1.14.0"),
        _report_item("vllm", "0.32.0", "torch==2.13.0", "humming-kernels[cu13]", "flashinfer-python==0.7.0.post1"),
        _report_item("humming-kernels", "0.1.17", "cuda-bindings", 'nvidia-cuda-nvcc; extra == "cu13"'),
        _report_item("nvidia-cuda-nvcc", "13.5.37", "nvidia-nvvm"),
        _report_item("nvidia-nvvm", "13.5.37"),
        _report_item("flashinfer-python", "0.7.0.post1", "cuda-python>=12.0", "nvidia-cudnn-frontend>=1.29.0", "torch"),
        _report_item("cuda-python", "13.4.4", "cuda-bindings~=13.4.4"),
        _report_item("nvidia-cudnn-frontend", "1.32.0"),
    ]}))
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "wheel_plan.py"), str(plan)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [
        "cuda-python==13.4.4", "flashinfer-python==0.7.0.post1", "humming-kernels==0.1.17", "nvidia-cuda-nvcc==13.5.37",
        "nvidia-cudnn-frontend==1.32.0", "nvidia-nvvm==13.5.37", "sympy==1.14.0", "vllm==0.32.0"]


def _pack(dest: Path, parts: Path, size: str = "1MB") -> subprocess.CompletedProcess:
    done = _run(FETCH, "--pack-only", "--dest", dest, "--parts", parts, "--part-size", size)
    assert done.returncode == 0, done.stderr
    return done


def test_parts_round_trip_and_a_damaged_part_is_refused(tmp_path):
    dest, parts = tmp_path / "wheels", tmp_path / "parts"
    dest.mkdir()
    rng = torch.Generator().manual_seed(0)
    for index, megabytes in enumerate((2.5, 1.2, 3.0)):
        data = torch.randint(0, 256, (int(megabytes * 1e6),), generator=rng, dtype=torch.uint8).numpy().tobytes()
        (dest / f"fake_{index}-1.0-py3-none-any.whl").write_bytes(data)
    _pack(dest, parts)
    chunks = sorted(parts.glob("wheels.tar.part-*"))
    assert len(chunks) >= 7 and all(c.stat().st_size <= 1_000_000 for c in chunks)
    listed = [line.split()[1] for line in (parts / "SHA256SUMS").read_text().splitlines()]
    assert listed == [c.name for c in chunks]
    # the reassembly the header of fetch_wheels.sh documents
    out = tmp_path / "reassembled"
    subprocess.run(f"cd {parts} && sha256sum -c SHA256SUMS && mkdir -p {out} && cat wheels.tar.part-* | "
                   f"tar -xf - -C {out}", shell=True, check=True, capture_output=True)
    for original in dest.iterdir():
        assert (out / original.name).read_bytes() == original.read_bytes()
    damaged = chunks[3].read_bytes()
    chunks[3].write_bytes(damaged[:-1] + bytes([damaged[-1] ^ 1]))
    config = tmp_path / "config.json"
    config.write_text("{}")
    done = _run(GPU, "--out", tmp_path / "out", "--parts", parts, "--venv", tmp_path / "venv",
                "--model-config", config)
    assert done.returncode == 2 and "do not match SHA256SUMS" in done.stderr
    assert not (tmp_path / "venv").exists()


def _tiny_wheel(folder: Path, blob_bytes: int, name: str = "benchprobe") -> Path:
    """A real, installable wheel (package `name`) carrying a blob of `blob_bytes` random bytes."""
    blob = torch.randint(0, 256, (blob_bytes,), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8).numpy().tobytes()
    info = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": b"from pathlib import Path\nBLOB = Path(__file__).with_name('blob.bin')\n",
        f"{name}/blob.bin": blob,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _imports(venv: Path, package: str) -> str | None:
    """The size of `package`'s blob as `venv`'s python sees it; None when it does not import there."""
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {package}; print({package}.BLOB.stat().st_size)"],
                           capture_output=True, text=True, env=_env())
    return probe.stdout.strip() if probe.returncode == 0 else None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_script_installs_both_venvs_offline_then_stops_without_cuda(tmp_path):
    dest, parts, out = tmp_path / "wheels", tmp_path / "parts", tmp_path / "out"
    venv, vllm_venv = tmp_path / "venv", tmp_path / "vllm-venv"
    (dest / "vllm").mkdir(parents=True)
    _tiny_wheel(dest, 3_000_000)
    _tiny_wheel(dest / "vllm", 1_000, name="vllmprobe")  # the bundle's vLLM set, as fetch_wheels.sh lays it out
    _pack(dest, parts)
    assert len(list(parts.glob("wheels.tar.part-*"))) == 4
    config = tmp_path / "config.json"
    config.write_text("{}")
    # The machine's own torch: this interpreter's, seen through PYTHONPATH as a system install would be.
    done = _run(GPU, "--out", out, "--parts", parts, "--venv", venv, "--vllm-venv", vllm_venv,
                "--model-config", config, PYTHON=sys.executable, PYTHONPATH=sysconfig.get_paths()["purelib"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"installed 1 wheels into {venv}\n" in done.stdout and f"installed 1 wheels into {vllm_venv}\n" in done.stdout
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("gpu.sh: CUDA is not available (torch "), done.stderr
    # each set in its own venv, neither in the other's (their pins conflict)
    assert (_imports(venv, "benchprobe"), _imports(venv, "vllmprobe")) == ("3000000", None)
    assert (_imports(vllm_venv, "vllmprobe"), _imports(vllm_venv, "benchprobe")) == ("1000", None)
    for made in (venv, vllm_venv):
        assert "include-system-site-packages = true" in (made / "pyvenv.cfg").read_text()
    assert not out.exists()  # nothing measured, nothing written


def test_gpu_script_without_a_model_config_says_where_it_goes(tmp_path):
    done = _run(GPU, "--out", tmp_path / "out", "--model-config", tmp_path / "absent.json")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "copy google/gemma-4-12B-it's config.json there" in done.stderr


def _bench_commands(tmp_path) -> list[tuple[int | None, list[str]]]:
    done = _run(GPU, "--print-bench-commands", "--out", tmp_path / "out", "--model-config", tmp_path / "c.json")
    assert done.returncode == 0, done.stderr
    commands = []
    for line in done.stdout.splitlines():
        words = shlex.split(line.removeprefix(_vllm_python_prefix(line) or ""))
        limit = int(words[1]) if words[0] == "timeout" else None
        commands.append((limit, words[words.index("bench/run.py") + 1:]))
    return commands


def test_the_harness_accepts_what_gpu_sh_passes_within_eight_minutes(tmp_path):
    commands = _bench_commands(tmp_path)
    parts, combine = commands[:-1], commands[-1]
    assert sum(limit for limit, _ in parts) <= 8 * 60 and combine[0] is None
    parsed = [cli.parse_args(argv) for _, argv in parts]
    assert all(a.architecture == "gemma-4-12B-it" and a.model_config == tmp_path / "c.json" for a in parsed)
    train = [a for a in parsed if a.suite == "train"]
    assert len(train) == 1 and train[0].variants is None and train[0].sequence_len == 4096
    scoring = [name for a in parsed if a.suite == "generate" for name in a.variants]
    assert sorted(scoring) == sorted(v.name for v in GEN_VARIANTS)  # every scoring variant, each once
    combined = cli.parse_args(combine[1])
    assert combined.combine == [a.out.with_suffix(".json") for a in parsed]
    assert combined.out == tmp_path / "out" / "report"
    assert {v.name for v in TRAIN_VARIANTS} >= {"a_sdpa_unpacked", "b_flash_varlen_packed"}


def _vllm_python_prefix(line: str) -> str | None:
    found = re.match(r"RECIPEKIT_VLLM_PYTHON=\S+ ", line)
    return found.group(0) if found else None


def test_the_vllm_part_runs_on_the_bundles_vllm_venv_unless_the_user_names_one(tmp_path):
    def prefixes(**env) -> list[str | None]:
        done = _run(GPU, "--print-bench-commands", "--out", tmp_path / "out", "--vllm-venv", tmp_path / "vv", **env)
        return [_vllm_python_prefix(line) for line in done.stdout.splitlines()]

    assert prefixes(RECIPEKIT_VLLM_PYTHON="") == [None] * 4  # unset, no venv: the harness's own default
    (tmp_path / "vv" / "bin").mkdir(parents=True)
    python = tmp_path / "vv" / "bin" / "python"
    python.symlink_to(sys.executable)
    assert prefixes(RECIPEKIT_VLLM_PYTHON="") == [None, None, f"RECIPEKIT_VLLM_PYTHON={python} ", None]
    assert prefixes(RECIPEKIT_VLLM_PYTHON="/opt/mine/python") == [
        None, None, "RECIPEKIT_VLLM_PYTHON=/opt/mine/python ", None]


def test_unknown_variants_are_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(["--suite", "generate", "--variants", "c_vllm,d_magic", "--out", "x"])
    assert stop.value.code == 2 and "unknown d_magic" in capsys.readouterr().err


def _text_config(tmp_path, **shape):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gemma4_unified", "text_config": shape}))
    return load_text_config(path, tiny=False)


def test_architecture_check_refuses_another_shape(tmp_path):
    published = {"num_hidden_layers": 48, "hidden_size": 3840, "vocab_size": 262_144}
    check_architecture(_text_config(tmp_path, **published), "gemma-4-12B-it")
    with pytest.raises(BenchError, match="field 'num_hidden_layers' is 30, gemma-4-12B-it has 48"):
        check_architecture(_text_config(tmp_path, **{**published, "num_hidden_layers": 30}), "gemma-4-12B-it")
    with pytest.raises(BenchError, match="field 'hidden_size' is 2304"):  # the class default, not the 12B's
        check_architecture(_text_config(tmp_path, num_hidden_layers=48, vocab_size=262_144), "gemma-4-12B-it")


def test_combine_writes_one_report_and_names_the_missing_part(tmp_path):
    parts = tmp_path / "out" / "parts"
    assert cli.main(["--suite", "generate", "--tiny", "--variants", "a_loop", "--rows", "2",
                     "--out", str(parts / "generate_transformers")]) == 0
    (parts / "generate_vllm.log").write_text("Traceback ...\ngpu.sh: generate_vllm stopped at its 180 s limit\n")
    argv = ["--combine", str(parts / "generate_transformers.json"), str(parts / "generate_vllm.json"),
            "--out", str(tmp_path / "out" / "report")]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["parts"]) == ["generate_transformers"]
    assert report["parts"]["generate_transformers"]["generate"]["variants"][0]["status"] == "measured"
    assert report["missing"][0]["last_log_line"] == "gpu.sh: generate_vllm stopped at its 180 s limit"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## Scoring throughput - generate_transformers" in markdown and "## Not measured" in markdown
    assert report["label"] in markdown  # the CPU label of the part travels with it
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["missing_parts"] == ["generate_vllm"] and manifest["command"] == argv
    assert str(parts / "generate_transformers.json") in manifest["inputs"]
