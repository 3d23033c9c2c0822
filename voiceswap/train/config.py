"""YAML configs: loading, ``section.key=value`` overrides, experiment tags and the resolved config.

One override syntax is used everywhere: ``section.key=value`` (any depth, e.g.
``model.encoder.channels=256``). The value is parsed as YAML, so ``64``, ``1e-4``, ``true``,
``null`` and ``[10, 4]`` arrive as int, float, bool, None and list. Only keys that already exist in
the YAML can be overridden, so a typo is an error instead of a silently ignored setting.

Every experiment directory holds the resolved ``config.yaml`` it was trained with; resuming with a
different model or training config is an error (:func:`check_config_compatible`), so two
experiments can never be mixed in one directory.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import yaml

import voiceswap
from voiceswap.data.atomic import atomic_open

#: Name of the resolved config written into every experiment directory.
RESOLVED_CONFIG_NAME = "config.yaml"

#: Keys the resolved config carries for provenance; never part of the comparison on resume.
METADATA_KEYS = ("voiceswap_version", "git_hash")

#: Dotted keys that may change between a run and its resumption: they change how long the run
#: goes or how often it reports, not what it learns.
RESUME_SAFE_KEYS = METADATA_KEYS + (
    "train.max_steps",
    "train.log_interval",
    "train.valid_interval",
    "train.save_interval",
    "train.keep_last",
    # How many non-finite steps stop a run; also absent from experiments made before it existed.
    "train.max_nonfinite_steps",
    # Only a run at step 0 reads it (a resumed run has its own weights); absent from older experiments.
    "train.init_from",
)


class ConfigError(ValueError):
    """A config file or override the user wrote is wrong; the message says what and where."""


class ConfigMismatchError(ConfigError):
    """An experiment directory was trained with a different config than the one given now."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-4``) and ``1e-4`` is a string;
    every ML config writes learning rates as ``1e-4``, so we add the YAML 1.2 float form.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no arbitrary objects), reading ``1e-4`` as a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def load_config(path: str | os.PathLike) -> Dict[str, Any]:
    """Read a YAML config file into a dict; the top level must be a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; configs live in conf/ (e.g. conf/<family>.yaml)")
    try:
        config = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(config).__name__}")
    return config


def parse_override(override: str) -> Tuple[List[str], Any]:
    """Split ``section.key=value`` into its key path and YAML-parsed value."""
    example = "write section.key=value, e.g. model.codebook_size=64"
    if "=" not in override:
        raise ConfigError(f"bad override {override!r}: no '='; {example}")
    key, raw_value = override.split("=", 1)
    key = key.strip()
    if key.startswith("-"):
        raise ConfigError(f"bad override {override!r}: the key starts with '-'; {example}")
    parts = key.split(".")
    if not key or any(not part or part != part.strip() or " " in part for part in parts):
        raise ConfigError(f"bad override {override!r}: {key!r} is not a dotted key; {example}")
    if not raw_value.strip():
        raise ConfigError(
            f"bad override {override!r}: empty value; write {key}=null for null or {key}=\"''\" for an empty string"
        )
    try:
        value = parse_yaml(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"bad override {override!r}: the value is not valid YAML: {error}") from error
    return parts, value


def _unknown_key_message(override: str, dotted: str, where: str, valid: Iterable[str]) -> str:
    valid = sorted(str(k) for k in valid)
    message = (f"unknown config key {dotted!r} in override {override!r}: "
               f"valid keys {where} are: {', '.join(valid) or '(none)'}")
    close = difflib.get_close_matches(dotted.rsplit(".", 1)[-1], valid, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Return a copy of ``config`` with every ``section.key=value`` override applied, in order.

    Raises :class:`ConfigError` on bad syntax, an unknown key (naming the valid keys at that level),
    an attempt to replace a whole section with a value, or a value of another type than the
    config's (see :func:`_checked_value`), so a typo fails here, before any work, rather than as
    a TypeError deep in a model.
    """
    config = copy.deepcopy(dict(config))
    for override in overrides:
        parts, value = parse_override(override)
        node: Dict[str, Any] = config
        for depth, part in enumerate(parts):
            dotted = ".".join(parts[: depth + 1])
            where = f"under {'.'.join(parts[:depth])!r}" if depth else "at the top level"
            if part not in node:
                raise ConfigError(_unknown_key_message(override, dotted, where, node.keys()))
            if depth == len(parts) - 1:
                if isinstance(node[part], dict):
                    raise ConfigError(
                        f"override {override!r}: {dotted!r} is a section, not a value; override one of its keys: "
                        + ", ".join(f"{dotted}.{k}" for k in node[part])
                    )
                node[part] = _checked_value(override, dotted, node[part], value)
            else:
                if not isinstance(node[part], dict):
                    raise ConfigError(
                        f"override {override!r}: {dotted!r} is a value ({node[part]!r}), not a section, "
                        f"so it has no key {parts[depth + 1]!r}"
                    )
                node = node[part]
    return config


def _type_name(value: Any) -> str:
    """How a message names the type of a config value: ``an integer``, ``a list of numbers``, ..."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        if value and value[0] is not None:
            # "an integer" -> "integers", "a list of numbers" -> "lists of numbers"
            element = "booleans" if isinstance(value[0], bool) else _type_name(value[0]).split(" ", 1)[1]
            first, _, rest = element.partition(" ")
            return f"a list of {first if first.endswith('s') else first + 's'}{' ' + rest if rest else ''}"
        return "a list"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A value as the user would write it in YAML (true, [0.9, 0.999]) or, for strings, quoted."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _type_mismatch(default: Any, value: Any) -> bool:
    """Whether ``value`` cannot stand where the config has ``default`` (lists: element-wise)."""
    if default is None or value is None:
        # A null default takes anything; null itself is how configs switch a feature off
        # (train.grad_clip=null), so whether a key may be null is its reader's business.
        return False
    if isinstance(default, bool) or isinstance(value, bool):
        return not (isinstance(default, bool) and isinstance(value, bool))
    if isinstance(default, float):
        return not isinstance(value, (int, float))
    if isinstance(default, list):
        if not isinstance(value, list):
            return True
        # Lists are checked element-wise against the default's first element (e.g. betas,
        # upsample rates); an empty default list takes any list.
        return bool(default) and any(_type_mismatch(default[0], item) for item in value)
    return not isinstance(value, type(default))


def _checked_value(override: str, dotted: str, default: Any, value: Any) -> Any:
    """``value`` if it has the type of the config's ``default``; a one-line :class:`ConfigError` if not.

    An int where the config has a float is fine (and becomes a float); an int key does not take
    a float (``train.max_steps=1.5``) and a bool key takes only ``true`` or ``false``.
    """
    if _type_mismatch(default, value):
        got = "the value" if isinstance(value, (bool, list)) else _type_name(value)
        raise ConfigError(f"override {override!r}: {dotted} takes {_type_name(default)} (the config has "
                          f"{_show(default)}), not {got} {_show(value)}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def _canonical_overrides(overrides: Sequence[str]) -> List[Tuple[str, str]]:
    """(key, canonical value) pairs: the last override of a key wins, sorted by key.

    Values are canonicalised through YAML, so ``[10,4]`` and ``[10, 4]`` (the same config) give
    the same tag, while any change of value gives a different one.
    """
    latest: Dict[str, str] = {}
    for override in overrides:
        parts, value = parse_override(override)
        latest[".".join(parts)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return sorted(latest.items())


def experiment_tag(config_path: str | os.PathLike, overrides: Sequence[str] = (), max_length: int = 100) -> str:
    """A stable, filesystem-safe experiment name: the config stem plus the overrides.

    ``conf/vqvae.yaml`` with ``model.codebook_size=64 train.lr=1e-4`` gives
    ``vqvae__model.codebook_size=64__train.lr=0.0001``. The order of overrides does not matter.
    Characters outside ``[A-Za-z0-9._=+-]`` become ``-``; if that loses information, or the tag
    would be longer than ``max_length``, an 8-character hash of the exact overrides is appended
    (the readable part shortened), so different overrides never share a directory.
    """
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "-", Path(config_path).stem) or "config"
    pairs = _canonical_overrides(overrides)
    if not pairs:
        return stem
    exact = "__".join(f"{key}={value}" for key, value in pairs)
    readable = re.sub(r"[^A-Za-z0-9._=+-]+", "-", exact).strip("-")
    tag = f"{stem}__{readable}"
    if readable == exact and len(tag) <= max_length:
        return tag
    digest = hashlib.sha1(exact.encode()).hexdigest()[:8]
    return f"{tag[: max(len(stem), max_length - 9)].rstrip('-_')}-{digest}"


def git_hash() -> str:
    """The commit of the voiceswap checkout, or ``"unknown"`` outside a git work tree."""
    package_dir = Path(voiceswap.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package_dir, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def write_resolved_config(config: Mapping[str, Any], outdir: str | os.PathLike) -> Path:
    """Write ``outdir/config.yaml`` atomically: the config plus ``voiceswap_version`` and ``git_hash``."""
    resolved = {key: value for key, value in config.items() if key not in METADATA_KEYS}
    resolved["voiceswap_version"] = voiceswap.__version__
    resolved["git_hash"] = git_hash()
    path = Path(outdir) / RESOLVED_CONFIG_NAME
    with atomic_open(path) as f:
        yaml.safe_dump(resolved, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return path


def flatten(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    flat: Dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


_MISSING = object()


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = RESUME_SAFE_KEYS
) -> List[str]:
    """Human-readable differences ``key a.b was 1, now 2`` between two configs, skipping ``ignore``."""
    old_flat, new_flat = flatten(old), flatten(new)
    ignored = set(ignore)
    differences = []
    for key in sorted(set(old_flat) | set(new_flat)):
        if key in ignored:
            continue
        before, after = old_flat.get(key, _MISSING), new_flat.get(key, _MISSING)
        if before != after:
            show = lambda v: "absent" if v is _MISSING else repr(v)  # noqa: E731
            differences.append(f"key {key} was {show(before)}, now {show(after)}")
    return differences


def check_config_compatible(
    config: Mapping[str, Any],
    outdir: str | os.PathLike,
    ignore: Iterable[str] = RESUME_SAFE_KEYS,
    previous: Optional[Mapping[str, Any]] = None,
    source: Optional[str] = None,
) -> None:
    """Raise :class:`ConfigMismatchError` if ``outdir`` was trained with a different config.

    Compares ``config`` with ``previous`` (default: ``outdir/config.yaml``, if there is one),
    ignoring provenance and the keys in ``ignore`` (run length and reporting intervals). Nothing
    to compare with is fine: it is a new experiment.
    """
    if previous is None:
        path = Path(outdir) / RESOLVED_CONFIG_NAME
        if not path.is_file():
            return
        previous = load_config(path)
        source = source or str(path)
    differences = config_differences(previous, config, ignore)
    if differences:
        raise ConfigMismatchError(
            f"outdir {outdir} was trained with a different config"
            + (f" ({source})" if source else "")
            + ": "
            + "; ".join(differences)
            + "; use another --outdir or tag"
        )
