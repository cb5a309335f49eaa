"""Rule-based chest CT report labeler: 80 organ-qualified labels, an abnormality x location table and evidence.

The design follows SARLE, the labeler of the RAD-ChestCT data that HiResCAM (Draelos & Carin, arXiv:2011.08891)
is trained and evaluated on: split the report into sentences, find abnormality and location phrases, discard the
findings a negation or normal statement covers, keep uncertain findings as positive, then pair each finding with
the sentence's locations to get an organ-qualified label (calcification + aorta -> ``h_great_vessel_calcification``).
Everything is rule-based on ``spacy.blank("en")`` (tokenizer, a report sentence splitter and a PhraseMatcher); no
statistical model is downloaded or used.

Rules, in order, for every abnormality phrase of a sentence:

1. **negation** -- a pre-cue (``no``, ``without``, ``negative for``...) negates the phrases after it, a post-cue
   (``was not observed``, ``is normal``, ``resolved``...) the phrases before it. A scope stops at a terminator
   (``but``, ``however``, ``although``, ``;``...) and at a clause break (``,``, ``and``, ``with``) once a finite verb
   closed the negated clause. Pseudo-cues (``no change``, ``cannot be excluded``, ``partially resolved``) mask the
   cue words they contain.
2. **uncertainty** -- hedged findings (``possible``, ``may represent``, ``cannot exclude``) stay positive and are
   flagged ``uncertain`` in the evidence.
3. **lymph nodes** -- a plain ``lymph node`` is lymphadenopathy only when qualified as enlarged/pathological and not
   as normal-sized, or when its short axis exceeds 10 mm.
4. **size** -- a lung nodule whose nearest measurement exceeds 10 mm also gives ``lung_nodulegr1cm``.
5. **organ** -- the locations named in the phrase's clause (else sentence) choose among the abnormality's organs;
   a phrase whose only locations belong to organs the abnormality cannot have (a cyst in the liver) yields no
   label; with no location the abnormality's default organ is used. Lobes give their side's lung, ``lingula``
   is the left mid lung, ``bilateral`` names both sides, ``both lungs`` both lungs.

Example:
    >>> from hirescam_ext.labeling import ReportLabeler
    >>> result = ReportLabeler().label("No nodule but a small right pleural effusion.")
    >>> [name for name, value in result.labels.items() if value]
    ['lung_pleural_effusion']
    >>> result.location_rows()["lung_pleural_effusion"]
    ['right_lung']
"""

from __future__ import annotations

import bisect
import csv
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import spacy
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc

from hirescam_ext.labeling.sentences import add_report_sentencizer
from hirescam_ext.labeling.vocabulary import TermInfo, Vocabulary, load_vocabulary
from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES

__all__ = ["Evidence", "SentenceInfo", "LabelResult", "ReportLabeler", "measurements_mm"]

_LABEL_INDEX = {name: i for i, name in enumerate(LABEL_NAMES)}
_LOCATION_INDEX = {name: i for i, name in enumerate(LOCATION_NAMES)}
_NUM = r"(\d+(?:[.,]\d+)?)"
_SIZE_RE = re.compile(
    _NUM + r"(?:\s*(?:x|\*|×|X)\s*" + _NUM + r")?(?:\s*(?:x|\*|×|X)\s*" + _NUM + r")?\s*"
    r"(mm|cm|millimet(?:er|re)s?|centimet(?:er|re)s?)\b",
    re.IGNORECASE,
)
_SHORT_AXIS_RE = re.compile(r"short(?:er|est)?[\s-]*(?:axis|diameter)", re.IGNORECASE)
#: relative pronouns end a forward (pre-cue) scope but not a backward one: "X, which was seen before, is not seen".
_RELATIVE = {"which", "that", "who", "whose"}
_DEFAULT_LOCATION = {"lung": "lung", "heart": "heart", "great_vessel": "aorta", "mediastinum": "mediastinum"}
_LUNG_SIDE_LOBES = {
    ("right", "upper"): "right_upper",
    ("right", "mid"): "right_mid",
    ("right", "lower"): "right_lower",
    ("left", "upper"): "left_upper",
    ("left", "mid"): "left_mid",
    ("left", "lower"): "left_lower",
}
_LOBE_SIDE = {v: k[0] for k, v in _LUNG_SIDE_LOBES.items()}


def _is_increase_word(word: str) -> bool:
    """Whether a lower-case token says 'more' (``increase``, ``increased``, ``increment``)."""
    return word.startswith(("increas", "increment"))


_COORDINATORS = {"and", "or", "and/or", ",", "/", "&"}


def _coordinated(words: Sequence[str], a: _Span, b: _Span) -> bool:
    """Whether span ``a`` is joined to span ``b`` right after it by coordinators only ('peribronchial and ...')."""
    between = words[a.end : b.start] if a.end <= b.start <= len(words) else ()
    return bool(between) and all(w in _COORDINATORS for w in between)


def measurements_mm(text: str) -> list[tuple[int, int, list[float], bool]]:
    """All measurements in ``text`` as ``(start, end, dimensions_in_mm, says_short_axis)``.

    Example:
        >>> measurements_mm("a 13x9.3 mm node and a 1.4 cm nodule")
        [(2, 11, [13.0, 9.3], False), (23, 29, [14.0], False)]
    """
    out = []
    for m in _SIZE_RE.finditer(text):
        scale = 10.0 if m.group(4).lower().startswith("c") else 1.0
        dims = [float(g.replace(",", ".")) * scale for g in m.groups()[:3] if g]
        window = text[max(0, m.start() - 40) : m.end() + 25]
        out.append((m.start(), m.end(), dims, bool(_SHORT_AXIS_RE.search(window))))
    return out


@dataclass
class Evidence:
    """Why one finding is positive: the phrase, its sentence, character spans into the original report."""

    abnormality: str
    labels: list[str]
    term: str
    start: int
    end: int
    sentence_index: int
    sentence: str
    sentence_start: int
    sentence_end: int
    locations: list[str]
    uncertain: bool = False
    rule: str = "term"


@dataclass
class SentenceInfo:
    """One sentence of the report, its character span and whether it states an abnormality."""

    text: str
    start: int
    end: int
    abnormal: bool
    abnormalities: list[str] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)


@dataclass
class LabelResult:
    """The labeler's output for one report.

    Attributes:
        labels: ``{label: 0/1}`` for the 80 labels of :data:`hirescam_ext.labels.LABEL_NAMES`, in that order.
        abnormalities: ``{abnormality: 0/1}`` at the organ-agnostic level (83 abnormalities of the vocabulary).
        locations: uint8 array ``[80, 51]`` (rows LABEL_NAMES, columns LOCATION_NAMES).
        evidence: one :class:`Evidence` per positive phrase.
        sentences: every sentence with its normal/abnormal flag.
        other_findings: non-negated mentions that are not abnormal by the rules (a lymph node that is not
            enlarged), kept for audit and for label sets that count them.
    """

    text: str
    labels: dict[str, int]
    abnormalities: dict[str, int]
    locations: np.ndarray
    evidence: list[Evidence]
    sentences: list[SentenceInfo]
    other_findings: list[Evidence] = field(default_factory=list)

    @property
    def label_vector(self) -> np.ndarray:
        """The 80 labels as a float32 vector (network output order)."""
        return np.array([self.labels[n] for n in LABEL_NAMES], dtype=np.float32)

    @property
    def positive_labels(self) -> list[str]:
        """Names of the positive labels, in LABEL_NAMES order."""
        return [n for n in LABEL_NAMES if self.labels[n]]

    def location_rows(self) -> dict[str, list[str]]:
        """``{label: [locations]}`` for the positive labels (the non-zero rows of the location table)."""
        out = {}
        for name in self.positive_labels:
            row = self.locations[_LABEL_INDEX[name]]
            out[name] = [LOCATION_NAMES[j] for j in np.flatnonzero(row)]
        return out

    def locations_dict(self) -> dict[str, dict[str, int]]:
        """The full table as ``{label: {location: 0/1}}`` (all 80 rows)."""
        return {
            name: {loc: int(self.locations[i, j]) for j, loc in enumerate(LOCATION_NAMES)}
            for i, name in enumerate(LABEL_NAMES)
        }

    def to_csv(self, path: str | os.PathLike | None = None) -> str:
        """The location table in the project CSV format (``abnormality`` + 51 location columns).

        Writes atomically to ``path`` when given; always returns the CSV text.
        """
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["abnormality", *LOCATION_NAMES])
        for i, name in enumerate(LABEL_NAMES):
            writer.writerow([name, *(int(v) for v in self.locations[i])])
        text = buf.getvalue()
        if path is not None:
            from hirescam_ext.utils.io import write_text_atomic

            write_text_atomic(path, text)
        return text

    def evidence_records(self) -> list[dict[str, Any]]:
        """The evidence as plain dicts (JSON-ready)."""
        return [asdict(e) for e in self.evidence]


@dataclass
class _Span:
    start: int
    end: int
    kind: str
    value: Any
    window: int | None = None


def _longest_first(spans: list[_Span]) -> list[_Span]:
    """Keep the longest spans; a shorter span overlapping a kept one is dropped, identical spans are all kept."""
    if len(spans) < 2:
        return spans
    spans = sorted(spans, key=lambda s: (s.start - s.end, s.start))
    taken: dict[int, tuple[int, int]] = {}
    kept: list[_Span] = []
    for s in spans:
        ident = (s.start, s.end)
        if all(taken.get(i, ident) == ident for i in range(s.start, s.end)):
            kept.append(s)
            for i in range(s.start, s.end):
                taken[i] = ident
    kept.sort(key=lambda s: (s.start, s.end))
    return kept


class ReportLabeler:
    """SARLE-style rule-based labeler of chest CT reports (80 labels, locations, evidence).

    Args:
        vocab_dir: folder with ``abnormalities.json``, ``locations.json`` and ``cues.json``; ``None`` uses the
            vocabulary shipped in ``hirescam_ext/resources/labeler``.
        nodule_size_mm: a nodule measured above this (largest dimension) also gets ``lung_nodulegr1cm``.
        node_short_axis_mm: a lymph node whose short axis exceeds this is lymphadenopathy.

    Example:
        >>> labeler = ReportLabeler()
        >>> labeler.label("Possible 8 mm nodule in the lingula.").location_rows()["lung_nodule"]
        ['left_mid', 'left_lung']
    """

    def __init__(
        self,
        vocab_dir: str | os.PathLike | None = None,
        nodule_size_mm: float = 10.0,
        node_short_axis_mm: float = 10.0,
    ):
        self.vocab: Vocabulary = load_vocabulary(vocab_dir)
        self.nodule_size_mm = float(nodule_size_mm)
        self.node_short_axis_mm = float(node_short_axis_mm)
        self.nlp = spacy.blank("en")
        add_report_sentencizer(
            self.nlp,
            abbreviations=self.vocab.cue_texts("abbreviations"),
            headers=self.vocab.cue_texts("section_headers"),
        )
        self._composite_terms: dict[str, TermInfo] = {}
        # one-word pre-negation cues of cues.json ('no', 'not', 'without'...): a pseudo cue opened by one of them and
        # holding an increase word is a denied increase ('no increase')
        self._negators = frozenset(
            text.lower() for text, window in self.vocab.cues["negation_pre"]
            if window is None and len(self.nlp.make_doc(text)) == 1
        )
        self._build_matcher()

    # ------------------------------------------------------------------ vocabulary -> matcher
    def _build_matcher(self) -> None:
        self.matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        self._keys: dict[int, tuple[str, Any, int | None]] = {}
        patterns: dict[str, list[str]] = {}
        payloads: dict[str, tuple[str, Any, int | None]] = {}

        def add(key: str, kind: str, value: Any, text: str, window: int | None = None) -> None:
            patterns.setdefault(key, []).append(text)
            payloads[key] = (kind, value, window)

        for abn in self.vocab.abnormalities.values():
            for k, term in enumerate(abn.terms):
                add(f"A|{abn.name}|{k}", "abn", term, term.text)
        for name, spec in self.vocab.composites.items():
            for text in spec["anchors"]:
                add(f"X|{name}|a", "comp_a", name, text)
            for text in spec["cues"]:
                add(f"X|{name}|c", "comp_c", name, text)
        for loc in self.vocab.locations.values():
            for text in loc.terms:
                add(f"L|{loc.name}", "loc", loc.name, text)
        # a side phrase holding a lung word ('both lungs', 'bilateral lungs') names the lungs, not only the sides
        lung_words = {
            text.lower() for loc in self.vocab.locations.values() if "lung" in loc.organs for text in loc.terms
            if len(self.nlp.make_doc(text)) == 1
        }
        for side, texts in self.vocab.sides.items():
            for text in texts:
                if any(tok.lower_ in lung_words for tok in self.nlp.make_doc(text)):
                    add(f"S|{side}|lung", "side_lung", side, text)
                else:
                    add(f"S|{side}", "side", side, text)
        for lobe, texts in self.vocab.lobes.items():
            for text in texts:
                add(f"B|{lobe}", "lobe", lobe, text)
        cue_kinds = {
            "negation_pre": "neg_pre",
            "negation_post": "neg_post",
            "pseudo": "pseudo",
            "uncertainty": "unc",
            "terminators": "term",
            "clause_verbs": "verb",
            "clause_breaks": "brk",
            "lymph_node_enlarged": "ln_big",
            "lymph_node_normal": "ln_ok",
            "increase": "inc",
            "normal_statement": "normal",
            "interpretation": "interp",
            "hypothetical": "neg_pre",
        }
        for key, kind in cue_kinds.items():
            for text, window in self.vocab.cues[key]:
                if kind == "term":  # keep the word: relative pronouns are treated apart
                    add(f"C|term|{text}", kind, text, text, window)
                else:
                    add(f"C|{kind}|{window}", kind, None, text, window)
        self._group_of = {
            "abn": "abn", "loc": "loc", "side": "loc", "side_lung": "loc", "lobe": "loc",
            "neg_pre": "neg", "neg_post": "neg", "pseudo": "neg", "ln_big": "ln", "ln_ok": "ln",
            "comp_a": "comp", "comp_c": "comp", "unc": "unc", "term": "term", "verb": "verb", "brk": "brk",
            "inc": "inc", "normal": "normal", "interp": "interp",
        }
        make = self.nlp.make_doc
        for key, texts in patterns.items():
            docs = [make(t) for t in dict.fromkeys(texts)]
            self.matcher.add(key, [d for d in docs if len(d)])
            self._keys[self.nlp.vocab.strings[key]] = payloads[key]

    # ------------------------------------------------------------------ public API
    def label(self, text: str) -> LabelResult:
        """Label one report (see the class docstring)."""
        if not isinstance(text, str):
            raise TypeError(f"report text must be a str, got {type(text).__name__}")
        return self._analyse(self.nlp(text), text)

    def label_many(self, texts: Iterable[str], n_process: int = 1, batch_size: int = 64) -> Iterator[LabelResult]:
        """Label many reports lazily with ``nlp.pipe`` (``n_process`` > 1 uses worker processes for spaCy)."""
        pairs = ((t, t) if isinstance(t, str) else ("", "") for t in texts)
        for doc, text in self.nlp.pipe(pairs, as_tuples=True, n_process=n_process, batch_size=batch_size):
            yield self._analyse(doc, text)

    def sentence_is_abnormal(self, sentence: str) -> bool:
        """SARLE-style normal/abnormal call for one sentence.

        Abnormal when it states a non-negated abnormality; otherwise normal when it carries a negation or normal
        statement cue (``no``, ``normal``, ``clear``, ``unremarkable``...); a sentence with neither describes
        something the vocabulary does not name and is called abnormal, as SARLE's rule-based sentence model does.
        """
        result = self.label(sentence)
        if any(s.abnormal for s in result.sentences):
            return True
        words = [w for w in re.findall(r"[A-Za-z]{2,}", sentence) if w.upper() != w or len(w) <= 3]
        if len(words) < 3:
            return False  # a fragment ('Lumbar spine', 'XXXX at XXXX') states no finding
        return not self._has_normal_cue(sentence)

    def _has_normal_cue(self, text: str) -> bool:
        doc = self.nlp.make_doc(text)
        for key, _, _ in self.matcher(doc):
            if self._keys[key][0] in ("neg_pre", "neg_post", "normal"):
                return True
        return False

    # ------------------------------------------------------------------ analysis
    def _analyse(self, doc: Doc, text: str | None = None) -> LabelResult:
        if text is None:
            text = doc.text
        groups: dict[str, list] = {"abn": [], "loc": [], "neg": [], "ln": [], "comp": []}
        plain: dict[str, list] = {"unc": [], "term": [], "verb": [], "brk": [], "inc": [], "normal": [], "interp": []}
        keys, group_of = self._keys, self._group_of
        for key, start, end in self.matcher(doc):
            kind, value, window = keys[key]
            group = group_of[kind]
            if group in plain:
                plain[group].append((start, end, value))
            else:
                groups[group].append(_Span(start, end, kind, value, window))
        abn, seen_abn = [], set()
        # 'no increase' is a pseudo-negation ('no increase in the nodule'), except for a finding that is the increase
        denied_increase = [
            (c.start, c.end) for c in groups["neg"]
            if c.kind == "pseudo" and doc[c.start].lower_ in self._negators
            and any(_is_increase_word(tok.lower_) for tok in doc[c.start : c.end])
        ]
        composites = self._composites(
            groups["comp"], groups["abn"], plain["term"], groups["neg"], [end for _, end in denied_increase],
            words=[tok.lower_ for tok in doc] if groups["comp"] else (),
        )
        for sp in _longest_first(groups["abn"]) + composites:
            if (sp.start, sp.end, sp.value.abnormality) not in seen_abn:
                seen_abn.add((sp.start, sp.end, sp.value.abnormality))
                abn.append(sp)
        locs = _longest_first(groups["loc"])
        neg = [s for s in _longest_first(groups["neg"]) if s.kind != "pseudo"]
        lns = _longest_first(groups["ln"])
        covered = {i for s in plain["interp"] for i in range(s[0], s[1])}  # 'with' of 'consistent with'
        interp_pos = sorted(s[0] for s in plain["interp"])
        term_pos = sorted(s[0] for s in plain["term"] if s[0] not in covered)
        main_term_pos = sorted(s[0] for s in plain["term"] if s[2] not in _RELATIVE and s[0] not in covered)
        rel_pos = sorted(s[0] for s in plain["term"] if s[2] in _RELATIVE)
        verb_pos = sorted({i for s in plain["verb"] for i in range(s[0], s[1])})
        brk_pos = sorted(s[0] for s in plain["brk"])
        unc_pos = sorted(s[0] for s in plain["unc"])
        inc_pos = sorted(s[0] for s in plain["inc"])

        info_ = doc.user_data.get("report_sentences")
        if info_ is None:  # a Doc made elsewhere: fall back to spaCy's sentence API
            sent_starts = [s.start for s in doc.sents]
            offsets = [t.idx for t in doc]
            lengths = [len(t) for t in doc]
            tok_texts = [t.text for t in doc]
        else:
            sent_starts, offsets, lengths, tok_texts = (
                info_["starts"], info_["offsets"], info_["lengths"], info_["texts"]
            )
        sent_bounds = list(zip(sent_starts, sent_starts[1:] + [len(doc)]))

        def char_start(i: int) -> int:
            return offsets[i]

        def char_end(i: int) -> int:
            return offsets[i] + lengths[i]

        def sent_of(i: int) -> int:
            return bisect.bisect_right(sent_starts, i) - 1

        by_sent: dict[int, dict[str, list[_Span]]] = {}
        for name, spans in (("abn", abn), ("loc", locs), ("neg", neg), ("ln", lns)):
            for s in spans:
                by_sent.setdefault(sent_of(s.start), {}).setdefault(name, []).append(s)

        labels = dict.fromkeys(LABEL_NAMES, 0)
        abnormalities = dict.fromkeys(self.vocab.abnormalities, 0)
        table = np.zeros((len(LABEL_NAMES), len(LOCATION_NAMES)), dtype=np.uint8)
        evidence: list[Evidence] = []
        other: list[Evidence] = []
        sentences: list[SentenceInfo] = []

        def any_in(pos: list[int], lo: int, hi: int) -> bool:
            k = bisect.bisect_left(pos, lo)
            return k < len(pos) and pos[k] < hi

        def closed(lo: int, hi: int, verb_lo: int, verb_hi: int | None = None) -> bool:
            """A clause break in [lo, hi) preceded (from verb_lo, before verb_hi) by a finite verb closes the scope."""
            k = bisect.bisect_left(brk_pos, lo)
            while k < len(brk_pos) and brk_pos[k] < hi:
                end = brk_pos[k] if verb_hi is None else min(brk_pos[k], verb_hi)
                if any_in(verb_pos, verb_lo, end):
                    return True
                k += 1
            return False

        for si, (s_start, s_end) in enumerate(sent_bounds):
            while s_end > s_start + 1 and tok_texts[s_end - 1].isspace():
                s_end -= 1
            if s_end <= s_start:
                continue
            sent_char0 = char_start(s_start)
            sent_text = text[sent_char0 : char_end(s_end - 1)]
            if not any(ch.isalnum() for ch in sent_text):
                continue  # punctuation-only pieces (CT-RATE's '"' separators) are not sentences
            info = SentenceInfo(text=sent_text, start=sent_char0, end=char_end(s_end - 1), abnormal=False)
            sentences.append(info)
            parts = by_sent.get(si)
            if not parts or "abn" not in parts:
                continue
            cues = parts.get("neg", [])
            sent_locs = parts.get("loc", [])
            sizes = None
            def evidence_at(m: Any, **fields: Any) -> Evidence:
                """Evidence for match ``m`` of the current sentence (span, term and sentence filled in)."""
                start, end = char_start(m.start), char_end(m.end - 1)
                return Evidence(
                    term=text[start:end], start=start, end=end, sentence_index=len(sentences) - 1,
                    sentence=sent_text, sentence_start=info.start, sentence_end=info.end, **fields,
                )

            for m in parts["abn"]:
                term = m.value
                if term.modifier and any(
                    m.end <= p.start <= m.end + 1
                    and not (
                        term.modifier == "before_specific" and self.vocab.abnormalities[p.value.abnormality].generic
                    )
                    for p in parts["abn"]
                ):
                    continue  # an adjective ('nodular thickening') describes the head noun after it
                if self.vocab.abnormalities[term.abnormality].generic and any(
                    m.start - 2 <= p.end <= m.start
                    and not any_in(brk_pos, p.end, m.start)
                    and p.value.modifier is not True
                    and not self.vocab.abnormalities[p.value.abnormality].generic
                    for p in parts["abn"]
                ):
                    continue  # 'sequelae density', 'micronodular opacities': the specific modifier names it
                if self.vocab.abnormalities[term.abnormality].generic and any(
                    p.start >= m.end
                    and term.abnormality in self.vocab.abnormalities[p.value.abnormality].refines
                    and any_in(interp_pos, m.end, p.start)
                    and not any_in(term_pos, m.end, p.start)
                    for p in parts["abn"]
                ):
                    continue  # 'haziness that may represent ground-glass': the interpretation names the pattern
                if term.requires == "increase":
                    k = bisect.bisect_left(inc_pos, max(s_start, m.start - 6))
                    near = [q for q in inc_pos[k:] if q < min(s_end, m.end + 6)]
                    if not any(
                        not any_in(term_pos, min(q, m.end), max(q, m.start)) for q in near if q < m.start or q >= m.end
                    ):
                        continue
                negated = any(d0 < m.start < d1 for d0, d1 in denied_increase)
                for c in () if negated else cues:
                    if c.start < m.start < c.end and c.kind in ("neg_pre", "neg_post"):
                        negated = True  # the cue phrase contains the finding ('not enlarged', 'no pathological node')
                        break
                    if c.kind == "neg_pre" and c.start < m.start and c.end <= m.end:
                        if c.window is not None and m.start - c.end > c.window:
                            continue
                        if any_in(term_pos, c.end, m.start) or closed(c.end, m.start, c.end):
                            continue
                        negated = True
                        break
                    if c.kind == "neg_post" and c.end > m.end and c.start > m.start:
                        if c.window is not None and c.start - m.end > c.window:
                            continue
                        if any_in(main_term_pos, m.end, c.start):
                            continue
                        k = bisect.bisect_left(term_pos, s_start)
                        clause_lo = s_start
                        while k < len(term_pos) and term_pos[k] < m.start:
                            clause_lo = term_pos[k]
                            k += 1
                        # verbs of a relative clause ('X, which was seen before, is not seen') do not close X's clause
                        k = bisect.bisect_left(rel_pos, m.end)
                        rel = rel_pos[k] if k < len(rel_pos) and rel_pos[k] < c.start else None
                        if closed(m.end, c.start, clause_lo, rel):
                            continue
                        negated = True
                        break
                if negated:
                    info.negated.append(term.abnormality)
                    continue
                abn_names = [term.abnormality, *term.also]
                if term.by_organ:
                    abn_names = self._by_organ(term, sent_locs, m, s_start, s_end, parts["abn"])
                rule = "term"
                if term.rule == "lymph_node":
                    if sizes is None:
                        sizes = measurements_mm(sent_text)
                    verdict = self._lymph_node(
                        (char_start(m.start), char_end(m.end - 1)), m, parts.get("ln", []), sizes, sent_char0
                    )
                    if verdict is None:
                        other.append(
                            evidence_at(
                                m,
                                abnormality="lymph_node",
                                labels=[],
                                locations=sorted(self._resolve_locations(sent_locs), key=_LOCATION_INDEX.get),
                                rule="not_enlarged",
                            )
                        )
                        continue
                    rule = verdict
                    abn_names = ["lymphadenopathy"]
                if term.abnormality == "nodule":
                    if sizes is None:
                        sizes = measurements_mm(sent_text)
                    if self._nodule_is_large((char_start(m.start), char_end(m.end - 1)), sizes, sent_char0):
                        abn_names.append("nodulegr1cm")
                        rule = "size>1cm"
                clause_locs = self._clause_locations(sent_locs, m, s_start, s_end, parts["abn"])
                near_locs = self._resolve_locations(clause_locs) | set(term.locations)
                all_locs = self._resolve_locations(sent_locs) | set(term.locations)
                if self._informative(near_locs):
                    all_locs = near_locs  # the finding's own phrase names where it is
                uncertain = any_in(unc_pos, s_start, s_end)
                labels_hit: set[str] = set()
                for name in abn_names:
                    if name == "nodulegr1cm" and "lung_nodule" not in labels_hit:
                        continue  # the size rule is for lung nodules only
                    abnormalities[name] = 1
                    chosen = self._organ_labels(name, near_locs)
                    if chosen is None:
                        chosen = self._organ_labels(name, all_locs)
                    if chosen is None:  # no organ named: the default organ, unless the phrase needs a location
                        chosen = [] if term.located else self._organ_labels(name, set(), fallback=True) or []
                    hit_labels = []
                    labels_hit.update(lab for _, lab in chosen)
                    for organ, label in chosen:
                        labels[label] = 1
                        hit_labels.append(label)
                        row = table[_LABEL_INDEX[label]]
                        cols = self._columns_for(organ, all_locs, name)
                        for col in cols:
                            row[_LOCATION_INDEX[col]] = 1
                    info.abnormal = True
                    if name not in info.abnormalities:
                        info.abnormalities.append(name)
                    evidence.append(
                        evidence_at(
                            m,
                            abnormality=name,
                            labels=hit_labels,
                            locations=sorted(all_locs, key=_LOCATION_INDEX.get),
                            uncertain=uncertain,
                            rule=rule,
                        )
                    )
        return LabelResult(
            text=text, labels=labels, abnormalities=abnormalities, locations=table, evidence=evidence,
            sentences=sentences, other_findings=other,
        )

    # ------------------------------------------------------------------ rule helpers
    def _composites(
        self,
        comp: list[_Span],
        abn: list[_Span],
        terms: list[tuple],
        neg: Sequence[_Span] = (),
        denied_increase_ends: Sequence[int] = (),
        words: Sequence[str] = (),
    ) -> list[_Span]:
        """Mentions made of an anchor and a change word ('peribronchial ... thickness increase').

        A terminator or a negation cue between the two words keeps them apart ('effusion - no thickening'). A change
        word that belongs to another organ-specific finding is not borrowed ('peribronchial area and interlobular
        septal thickenings' is septal thickening only), unless the anchor is coordinated directly with that finding's
        modifier and so shares its head noun ('peribronchial and interlobular septal thickenings' is both; ``words``
        are the lower-case tokens of the report). A denied increase right before the pair negates it: ``no
        increase`` is a pseudo-negation for a finding that is present ('no increase in the nodule'), but when the
        increase is the change itself ('no increase in peribronchial wall thickness') nothing is thickened.
        """
        if not comp:
            return []
        out: list[_Span] = []
        term_pos = sorted([t[0] for t in terms] + [c.start for c in neg if c.kind != "pseudo"])
        owned = [
            s for s in abn if s.value.abnormality in self.vocab.abnormalities
            and self.vocab.abnormalities[s.value.abnormality].implied
        ]
        for name, spec in self.vocab.composites.items():
            anchors = [s for s in comp if s.kind == "comp_a" and s.value == name]
            changes = [s for s in comp if s.kind == "comp_c" and s.value == name]
            for a in anchors:
                for c in changes:
                    lo, hi = min(a.start, c.start), max(a.end, c.end)
                    if a.end <= c.start or c.end <= a.start:
                        gap = max(c.start - a.end, a.start - c.end)
                        k = bisect.bisect_left(term_pos, lo)
                        blocked = k < len(term_pos) and term_pos[k] < hi
                        if any(end <= lo <= end + 2 for end in denied_increase_ends):
                            continue  # 'no increase in peribronchial wall thickness'
                        owners = [
                            s for s in owned
                            if s.value.abnormality != name and s.start <= c.start and c.end <= s.end
                            and not (s.start < a.end and a.start < s.end)
                        ]
                        if owners and not any(_coordinated(words, a, s) for s in owners):
                            continue  # the change word is part of another finding ('interlobular septal thickenings')
                        if gap <= spec["window"] and not blocked:
                            if not any(s.value.abnormality == name and s.start < hi and lo < s.end for s in abn):
                                info = self._composite_terms.setdefault(name, TermInfo(abnormality=name, text=name))
                                out.append(_Span(lo, hi, "abn", info))
                                break
        return out

    def _by_organ(
        self, term, sent_locs: list[_Span], m: _Span, s_start: int, s_end: int, mentions: list[_Span]
    ) -> list[str]:
        """Abnormalities of an organ-neutral term ('effusion') chosen by the organs of its clause/sentence locations."""
        for locs in (self._clause_locations(sent_locs, m, s_start, s_end, mentions), sent_locs):
            # the nearest location that names an organ decides ('free fluid in the abdomen ... right atrium')
            for span in sorted(locs, key=lambda sp: min(abs(sp.start - m.end), abs(m.start - sp.end))):
                organs: set[str] = set()
                for loc in self._resolve_locations([span]):
                    organs.update(self.vocab.locations[loc].organs)
                organs.discard("neutral")
                if organs:
                    return [target for organ, target in term.by_organ if organ in organs]
        return [term.abnormality]

    def _lymph_node(self, chars, m: _Span, ln_cues: list[_Span], sizes, sent_char0: int) -> str | None:
        """Decide whether a plain 'lymph node' mention is lymphadenopathy; returns the rule name or None."""
        size = self._nearest_size(chars, sizes, sent_char0)
        if size is not None:
            dims, short_axis = size
            axis = dims[0] if (short_axis and len(dims) == 1) else min(dims)
            if axis > self.node_short_axis_mm:
                return "short_axis>10mm"
            return None
        big = any(c.kind == "ln_big" and abs(c.start - m.start) <= 8 for c in ln_cues)
        ok = any(c.kind == "ln_ok" and abs(c.start - m.start) <= 8 for c in ln_cues)
        return "enlarged_node" if big and not ok else None

    def _nodule_is_large(self, chars, sizes, sent_char0: int) -> bool:
        size = self._nearest_size(chars, sizes, sent_char0)
        return size is not None and max(size[0]) > self.nodule_size_mm

    @staticmethod
    def _nearest_size(chars: tuple[int, int], sizes, sent_char0: int, reach: int = 90):
        if not sizes:
            return None
        lo = chars[0] - sent_char0
        hi = chars[1] - sent_char0
        best, best_d = None, reach + 1
        for s_start, s_end, dims, short in sizes:
            d = lo - s_end if s_end <= lo else (s_start - hi if s_start >= hi else 0)
            if d < best_d:
                best, best_d = (dims, short), d
        return best

    @staticmethod
    def _clause_locations(
        locs: list[_Span], m: _Span, s_start: int, s_end: int, mentions: list[_Span] | None = None
    ) -> list[_Span]:
        """Location spans of the phrase: between the previous and the next finding of the sentence (20 tokens max)."""
        lo, hi = m.start - 20, m.end + 20
        for other in mentions or ():
            if other.end <= m.start and other is not m:
                lo = max(lo, other.end)
            elif other.start >= m.end and other is not m:
                hi = min(hi, other.start)
        return [s for s in locs if s.end > lo and s.start < hi]

    def _informative(self, locs: set[str]) -> bool:
        """Whether a set of locations names an organ (not only neutral words such as 'anterior')."""
        return any("neutral" not in self.vocab.locations[loc].organs for loc in locs)

    def _resolve_locations(self, spans: Sequence[_Span]) -> set[str]:
        """Location names from location, side and lobe spans (lobes take the sides named with them)."""
        out: set[str] = set()
        sides: set[str] = set()
        lobes: set[str] = set()
        side_lung = False
        for s in spans:
            if s.kind == "loc":
                out.add(s.value)
                if s.value in _LOBE_SIDE:
                    out.add(f"{_LOBE_SIDE[s.value]}_lung")
            elif s.kind in ("side", "side_lung"):
                sides.update(("right", "left") if s.value == "both" else (s.value,))
                side_lung = side_lung or s.kind == "side_lung"  # 'both lungs'
            else:
                lobes.add(s.value)
        sided_lobes = {loc for loc in out if loc in _LOBE_SIDE}
        lungish = side_lung or bool(lobes) or any(
            loc in _LOBE_SIDE or "lung" in self.vocab.locations[loc].organs for loc in out
        )
        for side in sides:
            out.add(side)  # a bare side is organ-neutral ('right lobe of the thyroid')...
            if lungish:
                out.add(f"{side}_lung")  # ...and names a lung when the phrase is about the lungs
            for loc in sided_lobes:  # 'right and left upper lobes': the lobe applies to the bare side too
                out.add(_LUNG_SIDE_LOBES[(side, loc.split("_", 1)[1])])
        for lobe in lobes:
            for side in sides or ():
                out.add(_LUNG_SIDE_LOBES[(side, lobe)])
                out.add(f"{side}_lung")
        if lobes and not sides:
            out.add("lung")
        for name in ("right_lung", "left_lung"):
            if name in out:
                out.add(name.split("_")[0])
        return out

    def _organ_labels(self, name: str, locs: set[str], fallback: bool = False) -> list[tuple[str, str]] | None:
        """(organ, label) pairs for an abnormality given resolved locations.

        Returns [] when the locations make the pair impossible (or the abnormality has no organ label), ``None``
        when the locations say nothing about the organ (unless ``fallback``: then the default organ).
        """
        abn = self.vocab.abnormalities[name]
        if not abn.organs:
            return []
        if abn.implied:
            organ = next(iter(abn.organs))
            return [(organ, abn.organs[organ])]
        organs: set[str] = set()
        for loc in locs:
            organs.update(self.vocab.locations[loc].organs)
        organs.discard("neutral")
        picked = [(o, lab) for o, lab in abn.organs.items() if o in organs]
        if picked:
            seen: set[str] = set()
            return [(o, lab) for o, lab in picked if not (lab in seen or seen.add(lab))]
        if organs:
            return []  # only impossible locations: drop the pair
        if not fallback:
            return None
        organ = next(iter(abn.organs))
        return [(organ, abn.organs[organ])]

    def _columns_for(self, organ: str, locs: set[str], abnormality: str | None = None) -> list[str]:
        """Location-table columns for a label of ``organ``: the compatible locations.

        Lung sides are written as ``right_lung``/``left_lung`` (plus lobes); the bare ``right``/``left`` columns,
        synonyms of them in docs/ARCHITECTURE.md, are left 0 so each fact has one cell.
        """
        extra = self.vocab.abnormalities[abnormality].extra_locations if abnormality else ()
        cols = []
        for loc in locs:
            spec = self.vocab.locations[loc]
            if loc in ("right", "left"):
                if organ == "lung":
                    cols.append(f"{loc}_lung")
                continue
            if organ in spec.organs or "neutral" in spec.organs or loc in extra:
                cols.append(loc)
        if not any(c for c in cols if organ in self.vocab.locations[c].organs):
            cols.append(_DEFAULT_LOCATION[organ])
        if organ == "lung" and "lung" in cols and any(c.startswith(("right", "left")) for c in cols):
            cols.remove("lung")  # 'lung' means side unknown
        return list(dict.fromkeys(cols))
