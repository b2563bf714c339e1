"""The wheels bench/fetch_wheels.sh downloads: pip's resolution report minus torch and its CUDA runtime.

    python3 bench/wheel_plan.py plan.json     # one name==version a line

The GPU machine has its own torch, built for its driver, with the nvidia-*, triton and cuda-*
packages that build requires; those are followed from torch through their own requirements and
left out, a requirement that comes with an extra only when that extra was asked for (torch asks
cuda-toolkit for cublas, cudart, ..., not for nvcc: the vLLM set's nvcc, which its kernels need,
stays). Anything else, CUDA packages other packages need included, stays. Standard library only:
it runs on the fetching machine before anything is installed. fetch_wheels.sh runs it once per set
(training, vLLM).
"""

from __future__ import annotations

import json
import re
import sys

CUDA_RUNTIME = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(spec: str) -> tuple[str, set[str], set[str]]:
    """(name, the extras it asks of that package, the extras of its requirer it comes with) of a
    requires_dist entry such as `cuda-toolkit[cublas,nvrtc]==13.0.3; extra == "cu13"`."""
    found = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", spec)
    asked = {_key(extra) for extra in (found.group(2) or "").split(",") if extra.strip()}
    marker = spec.partition(";")[2]
    return _key(found.group(1)), asked, {_key(e) for e in re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)}


def wheels_to_fetch(report: dict) -> list[str]:
    items = {_key(i["metadata"]["name"]): i["metadata"] for i in report["install"]}
    extras_of = {"torch": set()}  # each package left out, with the extras asked of it
    todo = ["torch"]
    while todo:
        name = todo.pop()
        for spec in items[name].get("requires_dist") or [] if name in items else ():
            dep, asked, only_with = _requirement(spec)
            if dep not in items or not CUDA_RUNTIME.match(dep) or (only_with and not only_with & extras_of[name]):
                continue
            known = extras_of.get(dep)
            if known is None or not asked <= known:
                extras_of[dep] = (known or set()) | asked
                todo.append(dep)
    return [f"{meta['name']}=={meta['version']}" for key, meta in sorted(items.items()) if key not in extras_of]


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print("\n".join(wheels_to_fetch(json.load(handle))))
