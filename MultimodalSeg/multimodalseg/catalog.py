"""Model catalogs: the one shipped in the package and the user's cache of imported bundles. No torch.

A catalog is ``catalog.json`` (schema ``models/catalog.schema.json``, format ``multimodalseg-catalog/1``) beside the
bundles it lists. Entry keys: ``id``, ``version``, ``task``, ``file`` (relative to the catalog's folder) or ``url``
(``https://`` or ``file://``, fetched into the cache on first use), ``sha256``, ``inputs`` (roles), ``modality``,
``network``, ``demo`` (trained on synthetic data only), ``seconds`` (``{"cpu", "gpu", "cpu_machine",
"gpu_machine"}``, measured), ``metrics`` (validation), ``description``, ``created``, ``kind`` (``segmentation``, the
default when absent, ``fusion``: a spine CT-MR fusion model, or ``brain-mask``: the brain tumour's skull stripping;
the last two are never picked as a task's segmentation model),
``training_data`` (``phantoms``, ``synthetic`` from real anatomy, or ``real``; ``multimodalseg demo`` shows a
synthetic-data model a ``synth`` case from a held-out anatomy), ``incompatible`` (why the current code refuses
the bundle, e.g. trained on an older label table; loading it fails with ``bundles.check_label_table``'s message).

Folders: the shipped catalog is ``multimodalseg/models/catalog.json``; the user's is ``<home>/models/catalog.json``
where ``<home>`` is ``$MULTIMODALSEG_HOME`` or ``~/.cache/multimodalseg``. A model id found in both resolves to the
newest version; on a tie the user's copy wins.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from multimodalseg.errors import UserError
from multimodalseg.fileutil import atomic_write, atomic_write_json, atomic_write_text, publish, temporary_beside

CATALOG_FORMAT = "multimodalseg-catalog/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "models"
SCHEMA_PATH = SHIPPED_DIR / "catalog.schema.json"
CATALOG_NAME = "catalog.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def home() -> Path:
    """The per-user folder: ``$MULTIMODALSEG_HOME``, else ``~/.cache/multimodalseg``."""
    env = os.environ.get("MULTIMODALSEG_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "multimodalseg"


def cache_dir() -> Path:
    """Where imported and downloaded bundles and the user's catalog live."""
    return home() / "models"


@dataclass
class Entry:
    """One catalog entry (see the module docstring); ``catalog`` is the file it came from."""

    id: str
    version: str
    task: str
    sha256: str
    inputs: list[str]
    modality: list[str]
    demo: bool
    file: str | None = None
    url: str | None = None
    network: str | None = None
    description: str | None = None
    seconds: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    kind: str | None = None
    incompatible: str | None = None
    training_data: str | None = None
    catalog: Path | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], catalog: Path | None = None) -> Entry:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "catalog"}
        return cls(**known, catalog=catalog)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: empty optional fields left out."""
        d = asdict(self)
        d.pop("catalog")
        return {k: v for k, v in d.items() if k in ("demo", "inputs", "modality") or v not in (None, {}, [])}

    @property
    def model_kind(self) -> str:
        """``segmentation`` (absent ``kind``), ``fusion`` or ``brain-mask``."""
        return self.kind or "segmentation"

    @property
    def source(self) -> str:
        return "user" if self.catalog is not None and self.catalog.parent == cache_dir() else "shipped"

    def local_path(self) -> Path | None:
        """The bundle file, if it is (or would be) on disk: beside the catalog, or in the cache for a URL."""
        if self.file:
            return (self.catalog.parent if self.catalog else SHIPPED_DIR) / self.file
        if self.url:
            return cache_dir() / f"{self.id}-{self.version}.pt"
        return None


# --- validation -------------------------------------------------------------------------------------------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _type_ok(value: Any, kind: str) -> bool:
    if kind in ("number", "integer"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and (kind == "number" or float(value).is_integer())
    return isinstance(value, _TYPES[kind])


def validate(data: Any, schema: Mapping[str, Any] | None = None, where: str = "$") -> list[str]:
    """Errors of ``data`` against the catalog schema (a small JSON Schema subset: type, enum, pattern, required,
    properties, additionalProperties, items, minItems, minimum, oneOf); an empty list when valid."""
    if schema is None:
        schema = json.loads(SCHEMA_PATH.read_text())
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_type_ok(data, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(data).__name__}"]
    if "enum" in schema and data not in schema["enum"]:
        errors.append(f"{where}: {data!r} is not one of {schema['enum']}")
    if "pattern" in schema and isinstance(data, str) and not re.search(schema["pattern"], data):
        errors.append(f"{where}: {data!r} does not match {schema['pattern']}")
    if "minimum" in schema and _type_ok(data, "number") and data < schema["minimum"]:
        errors.append(f"{where}: {data} is below {schema['minimum']}")
    if isinstance(data, dict):
        for key in schema.get("required", ()):
            if key not in data:
                errors.append(f"{where}: missing '{key}'")
        props = schema.get("properties", {})
        for key, value in data.items():
            if key in props:
                errors += validate(value, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected key '{key}'")
    if isinstance(data, list):
        if len(data) < schema.get("minItems", 0):
            errors.append(f"{where}: needs at least {schema['minItems']} item(s)")
        if "items" in schema:
            for i, item in enumerate(data):
                errors += validate(item, schema["items"], f"{where}[{i}]")
    if "oneOf" in schema:
        matches = sum(not validate(data, sub, where) for sub in schema["oneOf"])
        if matches != 1:
            errors.append(f"{where}: must match exactly one of {len(schema['oneOf'])} alternatives (matched {matches})")
    return errors


# --- reading and writing ----------------------------------------------------------------------------------------

def read_catalog(path: str | os.PathLike) -> list[Entry]:
    """The entries of one catalog file; a missing file is an empty catalog.

    Raises:
        UserError: unreadable JSON or a schema violation (naming the file and the first problems).
    """
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"model catalog cannot be read ({exc})", p) from exc
    errors = validate(data)
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise UserError(f"model catalog is invalid: {'; '.join(errors[:3])}{more}", p)
    return [Entry.from_dict(d, p) for d in data["models"]]


def write_catalog(path: str | os.PathLike, entries: Iterable[Entry]) -> Path:
    """Write a catalog atomically (sorted by task, id, version), after validating it."""
    p = Path(path)
    items = sorted(entries, key=lambda e: (e.task, e.id, version_key(e.version)))
    data = {"format": CATALOG_FORMAT, "models": [e.to_dict() for e in items]}
    errors = validate(data)
    if errors:
        raise ValueError(f"refusing to write an invalid catalog: {'; '.join(errors[:3])}")
    return atomic_write_json(p, data)


def version_key(version: str) -> tuple:
    """Sort key of a version string: numeric parts compare as numbers (``0.10`` > ``0.9``)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version))


def shipped_catalog() -> Path:
    return SHIPPED_DIR / CATALOG_NAME


def user_catalog() -> Path:
    return cache_dir() / CATALOG_NAME


def entries(task: str | None = None, kind: str | None = None) -> list[Entry]:
    """All entries (shipped, then user), optionally of one task and one kind (``segmentation``, ``fusion``)."""
    found = read_catalog(shipped_catalog()) + read_catalog(user_catalog())
    return [e for e in found if (task is None or e.task == task) and (kind is None or e.model_kind == kind)]


def _newest(candidates: list[Entry]) -> Entry:
    return max(candidates, key=lambda e: (version_key(e.version), e.source == "user"))


def find(model_id: str, task: str | None = None) -> Entry:
    """The newest entry with this id (for ``task`` if given).

    Raises:
        UserError: unknown id (listing the known ones for the task), or an id of another task.
    """
    matches = [e for e in entries() if e.id == model_id]
    if not matches:
        known = sorted({e.id for e in entries(task)})
        hint = f"known for {task}: {', '.join(known)}" if task and known else "see 'multimodalseg models list'"
        raise UserError(f"unknown model '{model_id}' ({hint})")
    if task is not None and all(e.task != task for e in matches):
        raise UserError(f"model '{model_id}' is for task '{matches[0].task}', not '{task}'")
    return _newest([e for e in matches if task is None or e.task == task])


def default_for(task: str, kind: str = "segmentation") -> Entry:
    """The newest model of ``task`` of this kind; a UserError saying how to get one when there is none."""
    candidates = entries(task, kind)
    if not candidates and kind != "segmentation":
        raise UserError(f"no {kind} model for task {task} in the catalogs ({shipped_catalog()}, {user_catalog()}); "
                        "pass a bundle file")
    if not candidates:
        raise UserError(
            f"no model for task {task} in the catalogs ({shipped_catalog()}, {user_catalog()}); train one with "
            f"'python -m training fit ...' and 'python -m training export ...', then 'multimodalseg models import "
            "BUNDLE.pt', or pass --model PATH")
    return _newest(candidates)


def load(task: str, model: str | os.PathLike | None = None, kind: str = "segmentation"):
    """A :class:`~multimodalseg.bundles.Bundle` of ``task`` from ``model``: None (the newest of this kind in the
    catalogs), a catalog id, or a bundle file; sha256 checked, then loaded weights-only (``bundles.load_bundle``).
    The bundle's own kind is not checked here: callers that need one say so in their own words."""
    from multimodalseg.bundles import load_bundle

    text = None if model is None else os.fspath(model)
    if text is not None and (text.endswith(".pt") or os.sep in text or Path(text).exists()):
        return load_bundle(text, task=task)
    entry = default_for(task, kind) if text is None else find(text, task)
    return load_bundle(fetch(entry), sha256=entry.sha256, task=task)


def fetch(entry: Entry) -> Path:
    """The entry's bundle on disk: its file, or its URL downloaded into the cache (sha256 checked by the loader)."""
    path = entry.local_path()
    if path is None:
        raise UserError(f"catalog entry '{entry.id}' has neither file nor url", entry.catalog)
    if path.exists() or not entry.url:
        return path
    tmp = temporary_beside(path, ".pt")
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot download model '{entry.id}' from {entry.url} ({exc}); download it yourself and "
                        "run 'multimodalseg models import FILE --sha256 HEX'") from exc
    from multimodalseg.bundles import sha256_file

    actual = sha256_file(tmp)
    if actual != entry.sha256:  # never keep a damaged download in the cache
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"downloaded model '{entry.id}' has sha256 {actual[:12]}..., the catalog says "
                        f"{entry.sha256[:12]}...: damaged or changed download", entry.url)
    publish(tmp, path)
    return path


def expected_sha256(file: str | os.PathLike, given: str | None) -> str:
    """The checksum an import must match: ``given`` and/or the ``.sha256`` sidecar, which must agree.

    Raises:
        UserError: neither is available, one is not 64 hex digits, or they disagree.
    """
    from multimodalseg.bundles import read_sidecar

    side = read_sidecar(file)
    candidates = {name: v.lower() for name, v in (("--sha256", given), ("the .sha256 file", side)) if v}
    if not candidates:
        raise UserError("no sha256 to check the bundle against; pass --sha256 HEX (from the model's publisher) "
                        "or keep the .sha256 file beside it", file)
    for name, value in candidates.items():
        if not _HEX64.match(value):
            raise UserError(f"{name} is not a sha256 (64 hex digits): {value!r}", file)
    if len(set(candidates.values())) > 1:
        raise UserError("--sha256 and the .sha256 file disagree", file)
    return next(iter(candidates.values()))


def entry_from_meta(meta: Mapping[str, Any], sha256: str, file: str) -> Entry:
    """A catalog entry describing a bundle from its metadata (as ``bundles.load_bundle`` returns it)."""
    from multimodalseg.tasks import get_task

    task = get_task(str(meta["task"]))
    roles = list(meta.get("preprocessing", {}).get("roles") or task.roles)
    modality = sorted({m.upper() for spec in task.inputs for m in spec.modality.split("|")})
    seconds = {k: v for k, v in dict(meta.get("seconds") or {}).items()
               if k in ("cpu", "gpu", "cpu_machine", "gpu_machine")}
    return Entry(id=str(meta["id"]), version=str(meta["version"]), task=task.id, sha256=sha256, inputs=roles,
                 modality=modality, demo=bool(meta.get("demo", False)), file=file,
                 network=str(meta.get("network", {}).get("name")) if meta.get("network") else None,
                 description=meta.get("description"), seconds=seconds, metrics=dict(meta.get("metrics") or {}),
                 created=meta.get("created"), kind=meta.get("kind"))


def add_to_user_catalog(source: str | os.PathLike, meta: Mapping[str, Any], sha256: str,
                        *, force: bool = False) -> Entry:
    """Copy a checked bundle into the cache as ``ID-VERSION.pt`` (+ sidecar) and list it in the user catalog.

    The caller has verified ``sha256`` against the file and read ``meta`` with ``bundles.load_bundle``.

    Raises:
        UserError: the same id and version is already imported with another sha256 (and not ``force``), or the
            cache folder cannot be written.
    """
    name = f"{meta['id']}-{meta['version']}.pt"
    entry = entry_from_meta(meta, sha256, name)
    existing = read_catalog(user_catalog())
    clash = [e for e in existing if e.id == entry.id and e.version == entry.version]
    if clash and clash[0].sha256 != sha256 and not force:
        raise UserError(f"model {entry.id} {entry.version} is already imported with another sha256 "
                        f"({clash[0].sha256[:12]}...); pass --force to replace it", source)
    target = cache_dir() / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).resolve() != target.resolve():
            atomic_write(target, lambda tmp: shutil.copyfile(source, tmp), ".pt")
        atomic_write_text(f"{target}.sha256", f"{sha256}  {name}\n")
        write_catalog(user_catalog(), [e for e in existing if e not in clash] + [entry])
    except OSError as exc:
        raise UserError(f"cannot write the model cache ({exc.strerror or exc})", cache_dir()) from exc
    entry.catalog = user_catalog()
    return entry
