"""Unity Catalog's model registry and its default storage, as MLflow's `databricks-uc` registry client uses them.

With tracking URI `databricks` MLflow registers models in Unity Catalog: it creates a version (PENDING_REGISTRATION),
asks for temporary credentials, uploads the model files and finalizes the version (READY). This is a workspace on
default storage: the credentials say DEFAULT_STORAGE, so MLflow moves the files through presigned URLs
(`POST /api/2.0/fs/create-upload-url` / `create-download-url`, `GET /api/2.0/fs/directories/<path>`), which the
emulator also serves, signed with its own key and valid for 15 minutes. Like Unity Catalog it takes three-part
names in existing schemas only, accepts files only while a version is pending and hands them out only once it is
READY, and leaves tags and aliases out of search results.
"""

import hashlib
import hmac
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

SCHEMAS_PREFIX = "/api/2.1/unity-catalog/schemas/"  # Unity Catalog API: schemas
UC_PREFIX = "/api/2.0/mlflow/unity-catalog/"
FS_PREFIX = "/api/2.0/fs/"
PRESIGNED_PREFIX = "/presigned/"
URL_LIFETIME_S = 900
SEARCH_MAX_RESULTS = 1000  # the most one answer holds (an assumption: the reference gives no figure for this call)
SEARCH_FILTER = re.compile(r"^\s*(name|run_id)\s*=\s*'([^']*)'\s*$")


class ApiError(Exception):
    """A Databricks REST error: HTTP status, `error_code` and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def file_within(root: Path, path: str) -> Path:
    """`path` (absolute in the API's namespace) as a file under `root`; a path that climbs out is refused."""
    target = (root / path.lstrip("/")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ApiError(400, "INVALID_PARAMETER_VALUE", f"path {path!r} leaves {root.name}")
    return target


@dataclass
class Version:
    name: str
    number: int
    source: str
    run_id: str
    tags: dict[str, str]
    created: int = field(default_factory=lambda: int(time.time() * 1000))
    status: str = "PENDING_REGISTRATION"

    @property
    def storage_path(self) -> str:
        return "/Models/{}/{}".format(self.name.replace(".", "/"), self.number)


@dataclass
class Model:
    name: str
    created: int = field(default_factory=lambda: int(time.time() * 1000))
    versions: dict[int, Version] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)


class UnityCatalog:
    """The models of one workspace's metastore: `route` answers the REST calls, `presigned` the storage URLs."""

    def __init__(self, storage: Path, host: str, schemas: tuple[str, ...] = ("main.default",)):
        self.storage, self.host, self.schemas = storage, host, set(schemas)
        self.models: dict[str, Model] = {}
        self.key = os.urandom(32)
        self.lock = threading.Lock()

    def handles(self, path: str) -> bool:
        return path.startswith((UC_PREFIX, FS_PREFIX, SCHEMAS_PREFIX))

    def route(self, method: str, path: str, fields: dict) -> dict:
        """Answer one authenticated registry or files request (`fields`: query string and JSON body together)."""
        with self.lock:
            if path.startswith(SCHEMAS_PREFIX) and method == "GET":
                return self._schema(path.removeprefix(SCHEMAS_PREFIX))
            if path.startswith(FS_PREFIX + "directories/") and method == "GET":
                return self._list(path.removeprefix(FS_PREFIX + "directories"))
            handler = {
                ("POST", "registered-models/create"): self._create_model,
                ("GET", "registered-models/get"): lambda f: {"registered_model": self._model_json(self._model(f["name"]))},
                ("GET", "registered-models:is-databricks-sdk-models-artifact-repository-enabled"):
                    lambda f: {"is_databricks_sdk_models_artifact_repository_enabled": False},
                ("POST", "registered-models/alias"): self._set_alias,
                ("GET", "registered-models/alias"): self._get_alias,
                ("POST", "model-versions/create"): self._create_version,
                ("GET", "model-versions/get"): lambda f: {"model_version": self._version_json(self._version(f))},
                ("GET", "model-versions/search"): self._search,
                ("POST", "model-versions/generate-temporary-credentials"): self._credentials,
                ("GET", "model-versions/get-download-uri"): lambda f: {"artifact_uri": self._version(f).storage_path},
                ("POST", "model-versions/finalize"): self._finalize,
                ("POST", "fs/create-upload-url"): lambda f: self._presign("PUT", f["path"], "PENDING_REGISTRATION"),
                ("POST", "fs/create-download-url"): lambda f: self._presign("GET", f["path"], "READY"),
            }.get((method, path.removeprefix(UC_PREFIX).removeprefix("/api/2.0/")))
            if handler is None:
                raise ApiError(404, "ENDPOINT_NOT_FOUND", f"{method} {path} is not emulated")
            try:
                return handler(fields)
            except KeyError as missing:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"missing field {missing}") from None

    # --- registered models and versions ------------------------------------------------------------------

    def _schema(self, full_name: str) -> dict:
        """Unity Catalog API `GET /api/2.1/unity-catalog/schemas/{full_name}`: 404 for a schema (or catalog) that does
        not exist, as a workspace whose catalog is not `main` answers for `main.default`."""
        catalog, _, schema = full_name.partition(".")
        if full_name not in self.schemas:
            missing = "CATALOG_DOES_NOT_EXIST" if not any(known.startswith(f"{catalog}.") for known in self.schemas) else "SCHEMA_DOES_NOT_EXIST"
            raise ApiError(404, missing, f"Schema '{full_name}' does not exist.")
        return {"name": schema, "catalog_name": catalog, "full_name": full_name}

    def _model(self, name: str) -> Model:
        if name not in self.models:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Registered model '{name}' does not exist.")
        return self.models[name]

    def _version(self, fields: dict) -> Version:
        model = self._model(fields["name"])
        try:
            return model.versions[int(fields["version"])]
        except (KeyError, ValueError):
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                           f"Model version {fields['name']}/{fields['version']} does not exist.") from None

    def _create_model(self, fields: dict) -> dict:
        name = fields["name"]
        parts = name.split(".")
        if len(parts) != 3 or not all(parts):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"'{name}' is not a three-part name catalog.schema.model")
        if f"{parts[0]}.{parts[1]}" not in self.schemas:
            raise ApiError(404, "NOT_FOUND", f"Schema '{parts[0]}.{parts[1]}' does not exist.")
        if name in self.models:
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"Registered model '{name}' already exists.")
        self.models[name] = Model(name)
        return {"registered_model": self._model_json(self.models[name])}

    def _create_version(self, fields: dict) -> dict:
        model = self._model(fields["name"])
        tags = {tag["key"]: tag.get("value", "") for tag in fields.get("tags", [])}
        version = Version(model.name, len(model.versions) + 1, fields.get("source", ""), fields.get("run_id", ""), tags)
        model.versions[version.number] = version
        return {"model_version": self._version_json(version)}

    def _credentials(self, fields: dict) -> dict:
        version = self._version(fields)
        needed = "PENDING_REGISTRATION" if fields.get("operation") == "MODEL_VERSION_OPERATION_READ_WRITE" else "READY"
        if version.status != needed:
            raise ApiError(400, "INVALID_STATE", f"Model version {version.name}/{version.number} is {version.status}")
        return {"credentials": {"storage_mode": "DEFAULT_STORAGE",
                                "expiration_time": int((time.time() + URL_LIFETIME_S) * 1000)}}

    def _finalize(self, fields: dict) -> dict:
        version = self._version(fields)
        if not (file_within(self.storage, version.storage_path) / "MLmodel").is_file():
            raise ApiError(400, "INVALID_STATE", f"Model version {version.name}/{version.number} has no MLmodel file")
        version.status = "READY"
        return {"model_version": self._version_json(version)}

    def _set_alias(self, fields: dict) -> dict:
        version = self._version(fields)
        if version.status != "READY":
            raise ApiError(400, "INVALID_STATE", f"Model version {version.name}/{version.number} is {version.status}")
        self.models[version.name].aliases[fields["alias"]] = version.number
        return {}

    def _get_alias(self, fields: dict) -> dict:
        model = self._model(fields["name"])
        if fields["alias"] not in model.aliases:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Alias '{fields['alias']}' does not exist on '{model.name}'.")
        return {"model_version": self._version_json(model.versions[model.aliases[fields["alias"]]])}

    def _search(self, fields: dict) -> dict:
        match = SEARCH_FILTER.match(fields.get("filter", ""))
        if not match:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "filter must be name = '<name>' or run_id = '<run id>'")
        key, value = match.groups()
        found = [version for model in self.models.values() for version in model.versions.values()
                 if (version.name if key == "name" else version.run_id) == value]
        # Pages of `max_results` (at most SEARCH_MAX_RESULTS), the next one named by `next_page_token`, as the
        # Databricks REST reference describes list and search calls.
        size = min(int(fields.get("max_results") or SEARCH_MAX_RESULTS), SEARCH_MAX_RESULTS)
        start = int(fields.get("page_token") or 0)
        answer = {"model_versions": [self._version_json(version, in_search=True) for version in found[start:start + size]]}
        if start + size < len(found):
            answer["next_page_token"] = str(start + size)
        return answer

    def _model_json(self, model: Model) -> dict:
        return {"name": model.name, "creation_timestamp": model.created, "last_updated_timestamp": model.created,
                "aliases": [{"alias": alias, "version": str(number)} for alias, number in model.aliases.items()]}

    def _version_json(self, version: Version, in_search: bool = False) -> dict:
        answer = {"name": version.name, "version": str(version.number), "source": version.source,
                  "run_id": version.run_id, "status": version.status, "storage_location": version.storage_path,
                  "creation_timestamp": version.created, "last_updated_timestamp": version.created}
        if not in_search:
            answer["tags"] = [{"key": key, "value": value} for key, value in version.tags.items()]
            answer["aliases"] = [{"alias": alias, "version": str(number)}
                                 for alias, number in self.models[version.name].aliases.items() if number == version.number]
        return answer

    # --- default storage: files API and presigned URLs ---------------------------------------------------

    def _version_at(self, path: str) -> Version:
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[0] != "Models":
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"{path!r} is not in a model version (/Models/c/s/m/v/...)")
        return self._version({"name": ".".join(parts[1:4]), "version": parts[4]})

    def _presign(self, method: str, path: str, needed_status: str) -> dict:
        version = self._version_at(path)
        if version.status != needed_status:
            raise ApiError(400, "INVALID_STATE", f"Model version {version.name}/{version.number} is {version.status}")
        expires = str(int(time.time()) + URL_LIFETIME_S)
        query = urlencode({"expires": expires, "signature": self._signature(method, path, expires)})
        return {"url": f"{self.host}{PRESIGNED_PREFIX}{path.lstrip('/')}?{query}", "headers": []}

    def _signature(self, method: str, path: str, expires: str) -> str:
        return hmac.new(self.key, f"{method} /{path.lstrip('/')} {expires}".encode(), hashlib.sha256).hexdigest()

    def presigned(self, method: str, path: str, query: dict, body: bytes) -> bytes:
        """PUT or GET one file through a URL from create-upload-url / create-download-url (no bearer token)."""
        path = path.removeprefix(PRESIGNED_PREFIX.rstrip("/"))
        expires, signature = query.get("expires", ["0"])[0], query.get("signature", [""])[0]
        if not expires.isdigit() or int(expires) < time.time() or \
                not hmac.compare_digest(signature, self._signature(method, path, expires)):
            raise ApiError(403, "PERMISSION_DENIED", "invalid or expired presigned URL")
        target = file_within(self.storage, path)
        if method == "GET":
            if not target.is_file():
                raise ApiError(404, "NOT_FOUND", f"{path} does not exist")
            return target.read_bytes()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        return b""

    def _list(self, path: str) -> dict:
        self._version_at(path)
        folder = file_within(self.storage, path)
        if not folder.is_dir():
            raise ApiError(404, "NOT_FOUND", f"{path} is not a directory")
        return {"contents": [{"path": f"{path.rstrip('/')}/{entry.name}", "name": entry.name, "is_directory": entry.is_dir(),
                              **({} if entry.is_dir() else {"file_size": entry.stat().st_size})}
                             for entry in sorted(folder.iterdir())]}
