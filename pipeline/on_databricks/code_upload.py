"""A local project's code, put where a job cluster reads it: workspace files or a Unity Catalog volume.

What travels is what git tracks (its work-tree content, so uncommitted edits go too), never an untracked file: a
`.env` or a key beside the code stays on the laptop, and the untracked files left behind are named in one line.
Outside git (a job's own checkout on a cluster) every file travels except local state (SKIPPED_FOLDERS). The folder
is named by the content's SHA-256, so the same code is uploaded once; a marker file written last says it is complete.
"""

import base64
import hashlib
import subprocess
from pathlib import Path
from urllib.parse import quote

from pipeline.logs import LOGGER

TASK_FILE = "databricks_task.py"  # at the project's top: Databricks starts a Python task in its file's folder
SKIPPED_FOLDERS = {".git", ".venv", "mlruns", "mlartifacts", "__pycache__", "checkpoints", "lightning_logs"}
# Workspace API `import`: "content: The base64-encoded content. This has a limit of 10 MB" (Databricks REST reference,
# Workspace > Import). Counted here in decimal megabytes, the smaller reading.
IMPORT_LIMIT_BYTES = 10_000_000


class CodeRefused(Exception):
    """Nothing was uploaded: a file cannot travel the way the backend config says."""


def staged_files(project_uri: str) -> dict[str, Path]:
    """The files that travel, by relative path: in a git work tree what git tracks, elsewhere every file outside
    SKIPPED_FOLDERS."""
    folder = Path(project_uri.partition("#")[0]).expanduser().resolve()
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--", "."], cwd=folder, capture_output=True, text=True)
    if listed.returncode != 0:
        return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*"))
                if path.is_file() and not SKIPPED_FOLDERS & set(path.relative_to(folder).parts[:-1])}
    untracked = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard", "--", "."], cwd=folder,
                               capture_output=True, text=True).stdout.split("\0")
    if any(untracked):
        shown = [name for name in untracked if name]
        LOGGER.info(f"not uploaded (untracked; `git add` what the job needs): {', '.join(shown[:5])}"
                    + (f" and {len(shown) - 5} more" if len(shown) > 5 else ""))
    names = [name for name in listed.stdout.split("\0") if name]
    return {name: folder / name for name in sorted(names) if (folder / name).is_file()}  # a deleted tracked file stays gone


def code_digest(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in files.items():
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_import_sizes(files: dict[str, Path]) -> None:
    """Workspace files arrive through the import API, whose base64 content has a 10 MB limit: refuse before the first
    upload, naming the file, rather than end half uploaded with the API's message."""
    for name, path in files.items():
        encoded = 4 * -(-path.stat().st_size // 3)
        if encoded > IMPORT_LIMIT_BYTES:
            raise CodeRefused(f"{name} ({path.stat().st_size / 1e6:.1f} MB) is too big for workspace files (the import API takes "
                              f"10 MB of base64, {IMPORT_LIMIT_BYTES * 3 // 4 / 1e6:.1f} MB of file): stop tracking it, or "
                              "send the code to a volume (\"code_folder\": \"/Volumes/...\" in the backend config)")


def upload_code(workspace, files: dict[str, Path], code_folder: str | None) -> str:
    """Upload the files once: into `<home>/.sentiment-finetuning/code/<sha256>` (workspace files) or `<code_folder>/<sha256>`
    (a volume), a marker file last, so a folder with the marker is complete. Returns the folder as the cluster sees it."""
    if TASK_FILE not in files:
        raise CodeRefused(f"the project has no {TASK_FILE} at its top: the job would have nothing to run")
    digest = code_digest(files)
    if code_folder:
        folder = f"{code_folder.rstrip('/')}/{digest}"
        store = VolumeFiles(workspace)
    else:
        check_import_sizes(files)
        folder = f"/Users/{workspace.current_user.me().user_name}/.sentiment-finetuning/code/{digest}"
        store = WorkspaceFiles(workspace)
    marker = f"{folder}/.complete"
    if not store.exists(marker):
        for name, path in files.items():
            store.put(f"{folder}/{name}", path.read_bytes())
        store.put(marker, digest.encode())
    return folder if code_folder else f"/Workspace{folder}"


class WorkspaceFiles:
    """Workspace files (Workspace API 2.0 `mkdirs`, `import` as AUTO, `get-status`)."""

    def __init__(self, workspace):
        self.workspace, self.folders = workspace, set()

    def exists(self, path: str) -> bool:
        from databricks.sdk.errors import NotFound

        try:
            self.workspace.workspace.get_status(path)
            return True
        except NotFound:
            return False

    def put(self, path: str, content: bytes) -> None:
        from databricks.sdk.service.workspace import ImportFormat

        parent = path.rpartition("/")[0]
        if parent not in self.folders:
            self.workspace.workspace.mkdirs(parent)
            self.folders.add(parent)
        self.workspace.workspace.import_(path=path, content=base64.b64encode(content).decode(), format=ImportFormat.AUTO,
                                         overwrite=True)


class VolumeFiles:
    """A Unity Catalog volume (Files API: `PUT /api/2.0/fs/files<path>`, `HEAD` for existence). The path is part of the
    URL: a file name with a space, `#` or `?` must be percent-encoded, or the request names another file."""

    def __init__(self, workspace):
        self.workspace = workspace

    def exists(self, path: str) -> bool:
        from databricks.sdk.errors import NotFound

        try:
            self.workspace.api_client.do("HEAD", f"/api/2.0/fs/files{quote(path)}")
            return True
        except NotFound:
            return False

    def put(self, path: str, content: bytes) -> None:
        self.workspace.api_client.do("PUT", f"/api/2.0/fs/files{quote(path)}", query={"overwrite": "true"}, data=content,
                                     headers={"Content-Type": "application/octet-stream"})
