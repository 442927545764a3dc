"""Public data sets the tests read where a package installs them, never from copies in the repo."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def installed_file(package: str, name: str) -> Path | None:
    """A data file an installed distribution ships, found from its file list.

    The package is not imported: ``lifetimes`` 0.11.3 fails to import with recent scipy,
    and its data is all the tests want from it.
    """
    try:
        files = importlib.metadata.files(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files or ():
        if file.name == name:
            path = Path(str(file.locate()))
            return path if path.is_file() else None
    return None


# CDNOW: 69,659 purchases of 23,570 customers, 1997-01 to 1998-06 (the `dev` extra installs it).
CDNOW = installed_file("lifetimes", "CDNOW_master.txt")
MISSING_CDNOW = (
    "CDNOW is absent: install the dev extra (pip install -e '.[dev]'), lifetimes ships it"
)
