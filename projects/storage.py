"""Where a project's files live in Django storage (local disk or S3), and how they are removed."""
from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

log = logging.getLogger(__name__)


def project_prefix(project_id: int) -> str:
    return f"projects/{project_id}"


def save_bytes(path: str, data: bytes) -> str:
    """Save under exactly `path` (or a fresh name if taken); returns the stored name."""
    return default_storage.save(path, ContentFile(data))


def read_bytes(path: str) -> bytes:
    with default_storage.open(path, "rb") as fh:
        return fh.read()


def delete_quietly(*paths: str) -> None:
    for path in paths:
        if not path:
            continue
        try:
            default_storage.delete(path)
        except Exception:  # a missing file is already what we want
            log.warning("could not delete %s", path, exc_info=True)


def _walk(prefix: str):
    dirs, files = default_storage.listdir(prefix)
    for name in files:
        yield f"{prefix}/{name}"
    for name in dirs:
        yield from _walk(f"{prefix}/{name}")


def delete_project_files(project_id: int) -> None:
    prefix = project_prefix(project_id)
    try:
        paths = list(_walk(prefix))
    except (FileNotFoundError, NotADirectoryError):
        return
    delete_quietly(*paths)
    # Remove the now empty directories on a local file system.
    import os
    import shutil

    location = getattr(default_storage, "location", None)
    if location:
        shutil.rmtree(os.path.join(location, prefix), ignore_errors=True)
