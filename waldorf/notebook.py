"""What the first cells of every chapter do: choose the profile in sight, keep artifacts where a
chapter opened alone finds them, and say which profile, device and data the chapter will use.

On Colab the cell above them installs the package from the repository; elsewhere it does
nothing. Explained in book/intro.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from waldorf.config import ARTIFACTS_ENV, PROFILE_ENV, Profile, data_dir, get_profile

DRIVE_MOUNT = Path("/content/drive")
DRIVE_ARTIFACTS = DRIVE_MOUNT / "MyDrive" / "waldorf-artifacts"


def on_colab() -> bool:
    """True inside a Google Colab runtime. Explained in book/intro.md."""
    return "google.colab" in sys.modules


def default_profile() -> str:
    """``WALDORF_PROFILE`` when set (``waldorf book`` sets it), else ``colab`` on a Colab GPU
    runtime, else ``cpu``. Explained in book/intro.md.
    """
    if os.environ.get(PROFILE_ENV):
        return os.environ[PROFILE_ENV]
    import torch

    return "colab" if on_colab() and torch.cuda.is_available() else "cpu"


def keep_artifacts_on_drive(folder: Path = DRIVE_ARTIFACTS) -> Path:
    """Mount Google Drive and keep ``WALDORF_ARTIFACTS`` there, so the teacher trained by one
    chapter survives the runtime and every other chapter reuses it. Colab only.

    Explained in book/intro.md.
    """
    if not on_colab():
        raise RuntimeError("Google Drive can only be mounted inside Colab")
    from google.colab import drive  # noqa: PLC0415 - exists only on Colab

    drive.mount(str(DRIVE_MOUNT))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ARTIFACTS_ENV] = str(folder)
    return folder


def data_source(profile: Profile) -> str:
    """Where the profile's SQuAD 2.0 comes from, in words (no local paths).

    Explained in book/01_data_and_metric.ipynb.
    """
    if profile.data.source == "hub":
        return f"the hub's {profile.data.hub_dataset}"
    folder = data_dir()
    if folder is not None:
        return f"the files in WALDORF_DATA_DIR (a folder named {folder.name!r})"
    return "the tiny packaged sample (WALDORF_DATA_DIR is not set)"


def device_name() -> str:
    """The accelerator training will use, or the CPU and its torch threads."""
    import torch

    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {torch.get_num_threads()} torch threads"


def start(profile_name: str, drive: bool = False) -> Profile:
    """Use ``profile_name`` for this kernel (also for the package's own lookups), optionally keep
    artifacts on Drive, and print profile, device, data and artifact store.

    Explained in book/intro.md.
    """
    profile = get_profile(profile_name)
    os.environ[PROFILE_ENV] = profile.name
    store = keep_artifacts_on_drive() if drive else None
    where = "Google Drive" if store else ("WALDORF_ARTIFACTS" if os.environ.get(ARTIFACTS_ENV)
                                          else "~/.cache/waldorf")
    print(f"profile {profile.name} · {device_name()} · data: {data_source(profile)} · "
          f"artifacts: {where}")
    return profile


__all__ = ["data_source", "default_profile", "device_name", "keep_artifacts_on_drive",
           "on_colab", "start"]
