"""The wheels bench/fetch_wheels.sh downloads: pip's resolution report minus torch and its CUDA runtime.

    python3 bench/wheel_plan.py plan.json     # one name==version a line

The GPU machine has its own torch, built for its driver, with the nvidia-*, triton and cuda-*
packages that build requires; those are followed from torch through their own requirements and
left out. Anything else, CUDA packages other packages need included, stays. Standard library only:
it runs on the fetching machine before anything is installed.
"""

from __future__ import annotations

import json
import re
import sys

CUDA_RUNTIME = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheels_to_fetch(report: dict) -> list[str]:
    items = {_key(i["metadata"]["name"]): i["metadata"] for i in report["install"]}

    def requires(name: str):
        for spec in items[name].get("requires_dist") or []:
            dep = _key(re.match(r"[A-Za-z0-9._-]+", spec).group(0))
            if dep in items:
                yield dep

    left_out, todo = {"torch"}, ["torch"]
    while todo:
        name = todo.pop()
        for dep in requires(name) if name in items else ():
            if CUDA_RUNTIME.match(dep) and dep not in left_out:
                left_out.add(dep)
                todo.append(dep)
    return [f"{meta['name']}=={meta['version']}" for key, meta in sorted(items.items()) if key not in left_out]


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print("\n".join(wheels_to_fetch(json.load(handle))))
