"""Reading a recipe: the defaults in config.py, then the params YAML, then `--set key=value` overrides.

Relative file paths in a recipe are relative to the recipe file, so a recipe works from any folder; paths given
with --set stay relative to the working folder. Every error is one line naming the file or the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .config import RunConfig, config_from_dict
from .exceptions import ConfigError
from .paths import is_local_path


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (the second would silently win)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str, source: str) -> Any:
    """YAML -> Python; an error is one line with the line and column it is at."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{source}: not valid YAML ({where}{e.problem or e.context})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """'sample.temperature=0.7' -> (['sample', 'temperature'], 0.7); values are read as YAML scalars."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. sample.temperature=0.7")
    return key.strip().split("."), read_yaml(raw, f"--set {item!r}") if raw.strip() else None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file <- overrides. Raises ConfigError with a one-line message naming the field."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: params file not found")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the params file as UTF-8") from None
        data = read_yaml(text, str(path))
        if data is None:
            raise ConfigError(f"{path}: the params file is empty; give at least run_name (see params/demo.yaml)")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
        _resolve_from(data, path.parent)
        config_from_dict(data, str(path))  # the file's own errors name the file
    return config_from_dict(apply_overrides(data, overrides or []), "--set" if overrides else str(path or "params"))


_PATH_FIELDS = [("model", "name_or_path"), ("prm", "model"), ("task", "system_prompt_file"), ("task", "train", "path"),
                ("task", "test", "path"), ("eval", "second_set", "path"), ("eval", "second_set", "system_prompt_file")]


def _resolve_from(data: dict, base: Path) -> None:
    """Relative file paths in a params file are relative to that file, so a recipe works from any folder (the
    CLI in the project root, a notebook in notebooks/). Paths given with --set stay relative to the working folder."""
    for keys in _PATH_FIELDS:
        node = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        value = node.get(keys[-1]) if isinstance(node, dict) else None
        if not isinstance(value, str) or value.startswith(("/", "~")):
            continue
        is_file = keys[-1] not in ("name_or_path", "model") and not (keys[-1] == "path" and not is_local_path(value))
        if is_file or value.startswith("."):  # model folders must start with '.': anything else is a hub id
            node[keys[-1]] = str((base / value).resolve())
