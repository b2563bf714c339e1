"""Publish a finished checkpoint folder, its model card included, to the Hugging Face Hub.

Off unless asked (`--push-to-hub REPO [--private]` on merge/merge_lora.py,
merge/quantize_4bit.py and `python -m recipekit.reporting.model_card`). The login is checked before
any work starts; the folder is uploaded only once it has been written and verified, and
every hub failure (no token, offline, a refused request) is one line naming the repo.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from recipekit.checkpoints.load import WEIGHT_SUFFIXES, CheckpointError, refuse_existing
from recipekit.reporting.manifest import MANIFEST_NAME

CARD_NAME = "README.md"
HUB_ERRORS = (HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled, HFValidationError)


class PublishError(CheckpointError):
    """The checkpoint could not be pushed to the hub."""


def add_push_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the result and its model card to this hub repo")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")


def _first_line(err: Exception) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _login_hint(err: Exception) -> str:
    unauthorized = getattr(getattr(err, "response", None), "status_code", None) == 401
    return " (log in with `hf auth login` or set HF_TOKEN)" if unauthorized or isinstance(
        err, LocalTokenNotFoundError) else ""


def check_login(repo_id: str) -> str:
    """Fail before any work when REPO is not a repo id or no hub login is available; return the user name."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PublishError(f"--push-to-hub {repo_id!r}: {_first_line(err)}") from err
    try:
        return HfApi().whoami()["name"]
    except HUB_ERRORS as err:
        raise PublishError(f"cannot push to {repo_id}: {_first_line(err)}{_login_hint(err)}") from err


def push_folder(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Create REPO if needed and upload FOLDER; it must hold weights, manifest.json and README.md."""
    folder = Path(folder)
    missing = [name for name in (CARD_NAME, MANIFEST_NAME) if not (folder / name).is_file()]
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        missing.append("weights")
    if missing:
        raise PublishError(f"{folder}: not a finished checkpoint (no {', '.join(missing)}); nothing was pushed")
    api = HfApi()
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                          commit_message=f"Upload {folder.name} with its model card")
    except HUB_ERRORS as err:
        raise PublishError(f"pushing {folder} to {repo_id} failed: {_first_line(err)}; "
                           f"the checkpoint is still in {folder}{_login_hint(err)}") from err
    print(f"pushed {folder} to {url}")
    return str(url)


@dataclass(kw_only=True)
class ExportRequest:
    """What every command that writes a checkpoint directory (merge, 4-bit export) is given besides its input."""

    out: Path
    force: bool = False
    device: str | None = None
    push_to_hub: str | None = None
    private: bool = False

    def check(self) -> None:
        """Fail before any work: OUT exists and --force was not given, or --push-to-hub has no hub login."""
        refuse_existing(self.out, self.force)
        if self.push_to_hub:
            check_login(self.push_to_hub)

    @property
    def card_title(self) -> str:
        return self.push_to_hub or self.out.name

    def publish(self) -> None:
        """Push OUT, once written with its card and manifest, to --push-to-hub when given."""
        if self.push_to_hub:
            push_folder(self.out, self.push_to_hub, self.private)
