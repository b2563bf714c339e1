"""What `axolotl ARGS...` would launch, parsed by Axolotl's own CLI, without launching it.

    python -m recipekit.testing.axolotl_cli_probe train CONFIG [OPTIONS]

prints one JSON line: the CLI's exit code and output, and what its `launch_training` received
(config file, launcher, config options as given and as Axolotl coerces them, launcher
arguments). A process of its own: importing `axolotl.cli` configures logging with dictConfig,
which closes every logging handler of the process (a test session's capture handlers too).
"""

from __future__ import annotations

import json
import sys


def main(args: list[str]) -> None:
    import axolotl.cli.main as axolotl_main
    from axolotl.cli.config import _coerce_value
    from click.testing import CliRunner

    seen: dict = {}

    def launch_training(cfg_file, launcher, cloud, kwargs, launcher_args, use_exec):
        seen.update(config=cfg_file, launcher=launcher, kwargs=kwargs, launcher_args=list(launcher_args))

    axolotl_main.launch_training = launch_training
    result = CliRunner().invoke(axolotl_main.cli, args)
    seen["coerced"] = {key: _coerce_value(value) for key, value in seen.get("kwargs", {}).items()}
    sys.__stdout__.write(json.dumps({"exit_code": result.exit_code, "output": result.output, "seen": seen}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
