"""The report labeler's vocabulary: abnormality terms, location terms and context cues, read from data files.

The vocabulary lives in three JSON files (``abnormalities.json``, ``locations.json``, ``cues.json``) shipped in
``hirescam_ext/resources/labeler/`` and loaded with :mod:`importlib.resources`; a copy can be edited and passed as
``vocab_dir`` to use a different vocabulary without touching code. The organ-agnostic abnormalities follow the
SARLE design of the RAD-ChestCT work that HiResCAM (Draelos & Carin, arXiv:2011.08891) trains on: a term names an
abnormality, the sentence's locations pick the organ, and the pair gives one of the 80 organ-qualified labels.

Example:
    >>> from hirescam_ext.labeling.vocabulary import load_vocabulary
    >>> vocab = load_vocabulary()
    >>> vocab.abnormalities["calcification"].organs["great_vessel"]
    'h_great_vessel_calcification'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES
from hirescam_ext.utils.errors import InputError

__all__ = ["ORGANS", "TermInfo", "Abnormality", "Location", "Vocabulary", "load_vocabulary", "plural_forms"]

#: organ groups a location can belong to; ``neutral`` locations fit every organ, ``other`` fits none of the 80.
ORGANS = ("lung", "heart", "great_vessel", "mediastinum", "other", "neutral")

_FILES = ("abnormalities.json", "locations.json", "cues.json")
_CUE_KEYS = (
    "negation_pre",
    "negation_post",
    "pseudo",
    "uncertainty",
    "terminators",
    "clause_verbs",
    "clause_breaks",
    "lymph_node_enlarged",
    "lymph_node_normal",
    "abbreviations",
    "section_headers",
    "increase",
    "normal_statement",
    "interpretation",
    "hypothetical",
)


@dataclass(frozen=True)
class TermInfo:
    """One abnormality phrase: the abnormality it names, extra abnormalities it implies, implied locations, rule.

    ``located`` marks a phrase whose wording belongs to solid organs as much as to the lung (``hypodense nodule``):
    it gives an organ label only when its locations name the organ, never the abnormality's default organ.
    """

    abnormality: str
    text: str
    also: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    rule: str | None = None
    modifier: bool | str = False
    by_organ: tuple[tuple[str, str], ...] = ()
    requires: str | None = None
    located: bool = False


@dataclass(frozen=True)
class Abnormality:
    """An organ-agnostic abnormality: ``organs`` maps an organ group to its label (first entry = default organ).

    ``refines`` lists the generic descriptors this finding is a pattern of (ground glass and consolidation are kinds
    of opacity): a descriptor interpreted as such a pattern (``haziness that may represent ground-glass``) is that
    pattern, while a descriptor interpreted as a process (``density consistent with atelectasis``) stays as well.
    """

    name: str
    organs: dict[str, str]
    implied: bool = False
    derived: bool = False
    generic: bool = False
    terms: tuple[TermInfo, ...] = ()
    extra_locations: tuple[str, ...] = ()
    refines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Location:
    """One of the 51 locations, with the organ groups it belongs to and its phrases."""

    name: str
    organs: tuple[str, ...]
    terms: tuple[str, ...] = ()


@dataclass
class Vocabulary:
    """All data the labeler matches: abnormalities, locations, side and lobe words, context cues."""

    abnormalities: dict[str, Abnormality]
    locations: dict[str, Location]
    sides: dict[str, tuple[str, ...]]
    lobes: dict[str, tuple[str, ...]]
    cues: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    composites: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "package"

    def cue_texts(self, key: str) -> list[str]:
        """The phrases of one cue list (without their windows)."""
        return [text for text, _ in self.cues.get(key, [])]


def plural_forms(term: str) -> list[str]:
    """The term plus a regular plural of its last word (``atelectasis`` -> ``atelectases``, ``opacity`` -> ...)."""
    words = term.split(" ")
    last = words[-1]
    if not last.isalpha() or len(last) < 3:
        return [term]
    low = last.lower()
    if low.endswith("sis"):
        plural = last[:-2] + "es"
    elif low.endswith(("s", "x", "ch", "sh")):
        return [term]
    elif low.endswith("y") and low[-2] not in "aeiou":
        plural = last[:-1] + "ies"
    elif low.endswith("um"):
        plural = last[:-2] + "a"
    elif low.endswith(("ic", "al", "ed", "ous", "ar", "ive", "ing", "ary")):
        return [term]
    else:
        plural = last + "s"
    return [term, " ".join(words[:-1] + [plural])]


def _read(vocab_dir: str | os.PathLike | None, name: str) -> tuple[dict[str, Any], str]:
    if vocab_dir is None:
        where = resources.files("hirescam_ext").joinpath("resources", "labeler", name)
        text, origin = where.read_text(encoding="utf-8"), f"hirescam_ext/resources/labeler/{name}"
    else:
        origin = os.path.join(os.fspath(vocab_dir), name)
        if not os.path.isfile(origin):
            raise InputError(origin, "vocabulary file is missing (need abnormalities.json, locations.json, cues.json)")
        with open(origin, encoding="utf-8") as f:
            text = f.read()
    try:
        return json.loads(text), origin
    except json.JSONDecodeError as exc:
        raise InputError(origin, f"not valid JSON ({exc})") from exc


def _parse_terms(name: str, raw: list[Any], origin: str) -> tuple[TermInfo, ...]:
    out: list[TermInfo] = []
    for item in raw:
        if isinstance(item, str):
            item = {"term": item}
        if not isinstance(item, dict) or not isinstance(item.get("term"), str):
            raise InputError(origin, f"abnormality {name!r}: a term must be a string or {{'term': ...}}, got {item!r}")
        for loc in item.get("locations", []):
            if loc not in LOCATION_NAMES:
                raise InputError(origin, f"abnormality {name!r}: unknown implied location {loc!r}")
        for form in plural_forms(item["term"].lower()):
            out.append(
                TermInfo(
                    abnormality=name,
                    text=form,
                    also=tuple(item.get("also", ())),
                    locations=tuple(item.get("locations", ())),
                    rule=item.get("rule"),
                    modifier=item.get("modifier", False) if item.get("modifier") == "before_specific"
                    else bool(item.get("modifier", False)),
                    by_organ=tuple(item.get("by_organ", {}).items()),
                    requires=item.get("requires"),
                    located=bool(item.get("located", False)),
                )
            )
    return tuple(out)


def load_vocabulary(vocab_dir: str | os.PathLike | None = None) -> Vocabulary:
    """Read and check the three vocabulary files (package copy when ``vocab_dir`` is ``None``).

    Raises:
        InputError: a file is missing, is not JSON, names an unknown label/location/organ, or lacks a section.
    """
    abn_raw, abn_origin = _read(vocab_dir, "abnormalities.json")
    loc_raw, loc_origin = _read(vocab_dir, "locations.json")
    cue_raw, cue_origin = _read(vocab_dir, "cues.json")
    if "abnormalities" not in abn_raw:
        raise InputError(abn_origin, "missing the 'abnormalities' section")
    abnormalities: dict[str, Abnormality] = {}
    for name, spec in abn_raw["abnormalities"].items():
        organs = dict(spec.get("organs", {}))
        for organ, label in organs.items():
            if organ not in ORGANS:
                raise InputError(abn_origin, f"abnormality {name!r}: unknown organ {organ!r} (one of {ORGANS})")
            if label not in LABEL_NAMES:
                raise InputError(abn_origin, f"abnormality {name!r}: {label!r} is not one of the 80 labels")
        abnormalities[name] = Abnormality(
            name=name,
            organs=organs,
            implied=bool(spec.get("implied", False)),
            derived=bool(spec.get("derived", False)),
            generic=bool(spec.get("generic", False)),
            extra_locations=tuple(spec.get("extra_locations", ())),
            refines=tuple(spec.get("refines", ())),
            terms=_parse_terms(name, spec.get("terms", []), abn_origin),
        )
    for abn in abnormalities.values():
        for generic in abn.refines:
            if generic not in abnormalities:
                raise InputError(abn_origin, f"abnormality {abn.name!r}: 'refines' names unknown {generic!r}")
        for term in abn.terms:
            for organ, target in term.by_organ:
                if organ not in ORGANS or target not in abnormalities:
                    raise InputError(abn_origin, f"term {term.text!r}: bad by_organ entry {organ!r} -> {target!r}")
            if term.requires not in (None, "increase"):
                raise InputError(abn_origin, f"term {term.text!r}: unknown 'requires' {term.requires!r}")
            for extra in term.also:
                if extra not in abnormalities:
                    raise InputError(abn_origin, f"term {term.text!r}: 'also' names unknown abnormality {extra!r}")
    composites: dict[str, dict[str, Any]] = {}
    for name, spec in abn_raw.get("composites", {}).items():
        if name not in abnormalities or not spec.get("anchors") or not spec.get("cues"):
            raise InputError(abn_origin, f"composite {name!r}: needs a known abnormality, anchors and cues")
        composites[name] = {
            "anchors": [t.lower() for t in spec["anchors"]],
            "cues": [t.lower() for t in spec["cues"]],
            "window": int(spec.get("window", 6)),
        }
    for key in ("locations", "sides", "lobes"):
        if key not in loc_raw:
            raise InputError(loc_origin, f"missing the {key!r} section")
    locations: dict[str, Location] = {}
    for name, spec in loc_raw["locations"].items():
        if name not in LOCATION_NAMES:
            raise InputError(loc_origin, f"{name!r} is not one of the 51 location names")
        organs = tuple(spec.get("organs", ()))
        if not organs or any(o not in ORGANS for o in organs):
            raise InputError(loc_origin, f"location {name!r}: organs must be a non-empty subset of {ORGANS}")
        locations[name] = Location(name=name, organs=organs, terms=tuple(t.lower() for t in spec.get("terms", ())))
    missing = [n for n in LOCATION_NAMES if n not in locations]
    if missing:
        raise InputError(loc_origin, f"locations missing from the vocabulary: {missing}")
    sides = {k: tuple(t.lower() for t in v) for k, v in loc_raw["sides"].items()}
    if set(sides) != {"right", "left", "both"}:
        raise InputError(loc_origin, "'sides' must have exactly the keys right, left, both")
    lobes = {k: tuple(t.lower() for t in v) for k, v in loc_raw["lobes"].items()}
    if not set(lobes) <= {"upper", "mid", "lower"}:
        raise InputError(loc_origin, "'lobes' keys must be among upper, mid, lower")
    cues: dict[str, list[tuple[str, int | None]]] = {}
    for key in _CUE_KEYS:
        if key not in cue_raw:
            raise InputError(cue_origin, f"missing the {key!r} cue list")
        entries: list[tuple[str, int | None]] = []
        for item in cue_raw[key]:
            if isinstance(item, str):
                entries.append((item.lower(), None))
            elif isinstance(item, dict) and isinstance(item.get("cue"), str):
                window = item.get("window")
                entries.append((item["cue"].lower(), None if window is None else int(window)))
            else:
                raise InputError(cue_origin, f"{key}: a cue must be a string or {{'cue': ..., 'window': n}}")
        cues[key] = entries
    return Vocabulary(
        abnormalities=abnormalities,
        locations=locations,
        sides=sides,
        lobes=lobes,
        cues=cues,
        composites=composites,
        source="package" if vocab_dir is None else os.fspath(vocab_dir),
    )
