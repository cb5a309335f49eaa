"""Sentence splitting for radiology reports, as a spaCy pipeline component (``report_sentences``).

Reports are not prose: they carry section headers (``FINDINGS:``), hard line breaks, numbered and bulleted lists,
quoted impression items and abbreviations (``approx.``, ``e.g.``) next to decimals (``1.4 cm``). The component sets
``Token.is_sent_start`` on every token with these rules:

* a sentence ends after ``.``, ``!`` or ``?`` unless the word before the period is a known abbreviation (the
  tokenizer keeps decimals such as ``1.4`` whole, so they never split);
* a blank line always starts a sentence; a single line break starts one when the next line begins with a capital
  letter, a digit or a list marker, or when the previous line ended with punctuation or a header colon;
* a header word followed by ``:`` (``FINDINGS:``, ``IMPRESSION:``, or any all-capital word) closes a sentence;
* ``;`` or ``:`` followed by a capitalised word, bullets (``•``, ``-`` or ``*`` at a line start) and the ``"``
  separators of CT-RATE impressions start a sentence;
* a list number (``1.``, ``2)``) stays with the sentence it numbers.

Example:
    >>> import spacy
    >>> from hirescam_ext.labeling.sentences import add_report_sentencizer
    >>> nlp = spacy.blank("en")
    >>> _ = add_report_sentencizer(nlp, abbreviations=["approx"], headers=["findings"])
    >>> [s.text for s in nlp("FINDINGS: Nodule approx. 1.4 cm. No effusion").sents]
    ['FINDINGS:', 'Nodule approx. 1.4 cm.', 'No effusion']
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from spacy.attrs import IDX, LENGTH, ORTH, SENT_START
from spacy.language import Language
from spacy.tokens import Doc

__all__ = ["ReportSentencizer", "add_report_sentencizer"]

_END = {".", "!", "?"}
_BULLETS = {"•", "·", "*", "-", "–", "—", "‣", "▪", "○", "●"}
_SEPARATORS = {'"', "“", "”"}


class ReportSentencizer:
    """Rule-based sentence boundaries for report text (see the module docstring for the rules).

    Args:
        abbreviations: lower-case words that may precede a period without ending the sentence.
        headers: lower-case section header words (``findings``); any all-capital word before ``:`` also counts.
    """

    def __init__(self, abbreviations: Iterable[str] = (), headers: Iterable[str] = ()):
        self.abbreviations = {a.lower().rstrip(".") for a in abbreviations}
        self.headers = {h.lower() for h in headers}

    def _is_abbreviation(self, text: str) -> bool:
        low = text.lower().rstrip(".")
        return low in self.abbreviations or (len(low) == 1 and low.isalpha())

    def __call__(self, doc: Doc) -> Doc:
        n = len(doc)
        if n == 0:
            return doc
        starts = [False] * n
        starts[0] = True
        arr = doc.to_array([IDX, LENGTH, ORTH])
        offsets = arr[:, 0].tolist()
        lengths = arr[:, 1].tolist()
        strings = doc.vocab.strings
        texts = [strings[h] for h in arr[:, 2].tolist()]
        line_start = True  # is the current token the first non-space token of a line?
        prev_real = -1  # index of the previous non-space token
        list_number = -1  # index of a list number token at a sentence start
        for i in range(n):
            text = texts[i]
            if text.isspace():
                if "\n" in text:
                    line_start = True
                    if text.count("\n") >= 2 and i + 1 < n:
                        starts[i + 1] = True
                continue
            if prev_real >= 0:
                prev = texts[prev_real]
                first = text[0]
                if line_start and (first.isupper() or first.isdigit() or text in _BULLETS or prev[-1:] in ".:;!?"):
                    starts[i] = True
                if prev in _END or (len(prev) > 1 and prev.endswith(".") and not self._is_abbreviation(prev)):
                    before = texts[prev_real - 1] if prev_real >= 1 else ""
                    after_abbreviation = (
                        prev == "." and before and self._is_abbreviation(before) and before.lower() != "etc"
                    )
                    after_list_number = prev == "." and prev_real - 1 == list_number
                    lower_after_symbol = first.islower() and prev == "." and before and not before[-1:].isalpha()
                    if not (after_abbreviation or after_list_number or lower_after_symbol):
                        starts[i] = True
                elif prev == ":" and prev_real >= 1:
                    head = texts[prev_real - 1]
                    if head.isupper() or head.lower() in self.headers or first.isupper():
                        starts[i] = True
                elif prev == ";" and (first.isupper() or first.isdigit()):
                    starts[i] = True
                elif prev in _SEPARATORS:
                    starts[i] = True
                if text in _SEPARATORS or text == "•":
                    starts[i] = True
                elif line_start and text in _BULLETS:
                    starts[i] = True
            if starts[i] and text.isdigit() and len(text) <= 2 and i + 1 < n and texts[i + 1] in (".", ")"):
                list_number = i
            line_start = False
            prev_real = i
        flags = np.where(np.array(starts, dtype=bool), 1, -1).astype("uint64").reshape(-1, 1)
        doc.from_array([SENT_START], flags)
        doc.user_data["report_sentences"] = {
            "starts": [i for i, st in enumerate(starts) if st],
            "offsets": offsets,
            "lengths": lengths,
            "texts": texts,
        }
        return doc


@Language.factory("report_sentences", default_config={"abbreviations": [], "headers": []})
def _make_report_sentences(nlp: Language, name: str, abbreviations: list[str], headers: list[str]) -> ReportSentencizer:
    return ReportSentencizer(abbreviations=abbreviations, headers=headers)


def add_report_sentencizer(
    nlp: Language, abbreviations: Iterable[str] = (), headers: Iterable[str] = ()
) -> ReportSentencizer:
    """Add the ``report_sentences`` component to ``nlp`` and return it."""
    config = {"abbreviations": list(abbreviations), "headers": list(headers)}
    return nlp.add_pipe("report_sentences", config=config)
