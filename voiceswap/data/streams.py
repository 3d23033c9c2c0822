"""Named feature streams: where a stream of one set lives, resolved in one place.

A config names the streams a model reads (``data.input_feats``, ``data.target_feats``, a vocoder's
``data.feats``). A plain name is a normalised feature of stage 3, ``<dump>/norm/<name>/<set>/feats.scp``;
a name with a slash is a dump sub-dir, e.g. ``raw/logmel80`` -> ``<dump>/raw/logmel80/<set>/feats.scp``.
Every other stream is declared in the config's ``streams:`` section as a path template::

    streams:
      content: "{dump}/content/{content}/{set}/feats.scp"     # stage 4: content features
      kmeans: "{exp}/content/kmeans/{set}/units.scp"          # stage 4: k-means ids
      soft_units: "{dump}/units/{tag}/{set}/vectors.scp"      # stage 5: the unit head's soft units

with ``{dump}`` the dump dir, ``{exp}`` the experiment dir (``exp/<tag>``), ``{tag}`` its name,
``{set}`` the data set, ``{content}`` the name of the config's content features
(:func:`voiceswap.features.content.content_name` of ``content.features``) and ``{pitch}`` that of its
``pitch:`` section (:func:`voiceswap.features.pitch.pitch_name`, e.g. ``dio_50-500``), so that
experiments with the same content features or F0 settings share them. Entry scripts never assemble
these paths themselves.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Union

PathLike = Union[str, Path]

#: Names a template may use.
TEMPLATE_FIELDS = ("dump", "exp", "tag", "set", "content", "pitch")


class StreamError(ValueError):
    """A stream name or template that cannot be resolved; the message says which and how to fix it."""


@dataclass(frozen=True)
class StreamLayout:
    """The dirs a recipe run resolves streams against."""

    dump_dir: Path
    exp_dir: Path

    @classmethod
    def of(cls, dump_dir: PathLike, exp_dir: PathLike) -> "StreamLayout":
        return cls(Path(dump_dir), Path(exp_dir))


def _template_fields(template: str) -> set:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def stream_scp(config: Mapping[str, Any], name: str, subset: str, layout: StreamLayout) -> Path:
    """The feats.scp (or units scp) of stream ``name`` for data set ``subset``."""
    templates: Mapping[str, str] = config.get("streams") or {}
    template = templates.get(name)
    if template is None:
        if name.startswith("/") or ".." in Path(name).parts:
            raise StreamError(f"stream name {name!r} must be a feature under the dump dir (e.g. logmel80 or "
                              "raw/logmel80) or a name declared in the config's streams: section")
        sub = Path(name) if "/" in name else Path("norm") / name
        return layout.dump_dir / sub / subset / "feats.scp"
    unknown = _template_fields(template) - set(TEMPLATE_FIELDS)
    if unknown:
        raise StreamError(f"streams.{name}: unknown field(s) {sorted(unknown)} in {template!r}; "
                          f"a template may use {{{'}, {'.join(TEMPLATE_FIELDS)}}}")
    values: Dict[str, str] = {"dump": str(layout.dump_dir), "exp": str(layout.exp_dir),
                              "tag": layout.exp_dir.name, "set": subset}
    if "content" in _template_fields(template):
        from voiceswap.features.content import content_name

        features = (config.get("content") or {}).get("features")
        if not isinstance(features, Mapping):
            raise StreamError(f"streams.{name} uses {{content}} but the config has no content.features section")
        values["content"] = content_name(features)
    if "pitch" in _template_fields(template):
        from voiceswap.features.pitch import PitchError, pitch_name

        try:
            values["pitch"] = pitch_name(config.get("pitch"))
        except PitchError as error:
            raise StreamError(f"streams.{name} uses {{pitch}}: {error}") from None
    return Path(template.format(**values))


def stream_dir(config: Mapping[str, Any], name: str, subset: str, layout: StreamLayout) -> Path:
    """The dir that holds stream ``name`` of ``subset`` (its ``.done`` stamp, utt2num_frames, frame_shift)."""
    return stream_scp(config, name, subset, layout).parent


def stream_scps(config: Mapping[str, Any], subset: str, layout: StreamLayout) -> Dict[str, Path]:
    """``{"input": scp, "target": scp}`` of a config's ``data.input_feats`` / ``data.target_feats``."""
    data = config["data"]
    return {"input": stream_scp(config, data["input_feats"], subset, layout),
            "target": stream_scp(config, data["target_feats"], subset, layout)}
