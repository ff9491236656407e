"""Load store files, with errors that name the file, the line and the field."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from walkout.store.model import Store, StoreError

BUILTIN_DIR = "builtin"
#: problems of one check listed at most (a catalogue of thousands may have them all)
MAX_LISTED = 20

# libyaml's C parser and emitter where PyYAML was built with it (the wheels are): 20x faster
# on a generated 20,000-plate store; the same safe subset of YAML either way
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class StoreFileError(ValueError):
    """A store file that cannot be read or does not describe a valid store."""


def builtin_stores() -> list[str]:
    """Names of the stores shipped with the package."""
    root = resources.files("walkout.store").joinpath(BUILTIN_DIR)
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_store_path(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped store of that name."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    ref = resources.files("walkout.store").joinpath(BUILTIN_DIR, f"{name_or_path}.yaml")
    if not ref.is_file():
        raise StoreFileError(
            f"no store named {name_or_path!r}: give a path to a store YAML file or one of "
            f"{', '.join(builtin_stores())}"
        )
    return Path(str(ref))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location, as deep as it resolves."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            nxt = node.value[key] if 0 <= key < len(node.value) else None
        else:
            nxt = None
        if nxt is None:
            break
        node, line = nxt, nxt.start_mark.line + 1
    return line


def parse_store(text: str, source: str = "<string>") -> Store:
    """Parse and validate a store description held in ``text``."""
    try:
        data: Any = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise StoreFileError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise StoreFileError(f"{source}: a store file must be a mapping at the top level")
    try:
        return Store.model_validate(data)
    except ValidationError as e:
        # the node tree (for line numbers) only when there is an error to place: composing
        # a hypermarket's file costs a minute in pure Python
        node = yaml.compose(text, Loader=_Loader)
        lines = []
        for err in e.errors():
            cause = err.get("ctx", {}).get("error")
            # a cross-reference check names where each of its problems is
            placed = (cause.problems if isinstance(cause, StoreError)
                      else [(tuple(err["loc"]), err["msg"])])
            for loc, msg in placed[:MAX_LISTED]:
                field = ".".join(str(x) for x in loc) or "(store)"
                line = _line_of(node, loc)
                where = f"{source}:{line}" if line else source
                lines.append(f"{where}: field {field}: {msg}")
            if len(placed) > MAX_LISTED:
                lines.append(f"{source}: ... and {len(placed) - MAX_LISTED} more like these")
        raise StoreFileError("invalid store file\n" + "\n".join(lines)) from e


def load_store(name_or_path: str | Path) -> Store:
    """Load a store by shipped name (``small``) or from a YAML file path."""
    path = resolve_store_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise StoreFileError(f"{path}: cannot read store file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise StoreFileError(f"{path}: not a text (UTF-8) store file: byte {e.start}") from e
    return parse_store(text, str(path))


def dump_store(store: Store, path: Path) -> None:
    """Write a store as YAML (prices and tax rates as strings so no precision is lost);
    optional fields left unset (a store without tax) are left out, as they were written.

    The file is written beside ``path`` and renamed over it: a failed write (a full disk)
    leaves a file that was there before whole."""
    data = store.model_dump(mode="json", exclude_none=True)
    text = (f"# walkout store file — format: docs/store-format.md\n"
            f"{yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
