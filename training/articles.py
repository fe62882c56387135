"""Articles and passages: header/date parsing, boilerplate removal, passage splitting.

The units follow ANNOTATION.md: a passage is a paragraph (one non-empty line); a paragraph longer than
``MAX_PASSAGE_CHARS``, or a body that is one line, is cut into windows of consecutive sentences of at most
that size. Titles count as passages. Boilerplate lines and sentences are dropped.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

MAX_PASSAGE_CHARS = 800

# Whole lines that are site furniture, not text (matched case-insensitively on the stripped line).
_BOILERPLATE_LINES = re.compile(
    r"""^(?:
        partager\ cet\ article | share\ post:? | stay\ connected | more\ updates | you\ might\ also\ enjoy
      | que\ pensez-vous\ de\ cet\ article\s*\?? | flash\ info\s*:? | lire\ aussi\b.* | à\ lire\ aussi\b.*
      | (?:inscrivez-vous|abonnez-vous|s'abonner|recevez)\b.*newsletter.* | newsletter | s'abonner | abonnez-vous.*
      | (?:laisser|ajouter|voir\ les|afficher\ les)\ (?:un\ )?commentaires?.* | \d+\ commentaires? | commentaires?
      | publicité | partager | tweeter | imprimer | \d{1,3}
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Lines after which the rest of the page is footer (related links, comment and newsletter widgets).
_FOOTER_START = re.compile(
    r"^(?:que pensez-vous de cet article\s*\??|stay connected|more updates|you might also enjoy|réagissez"
    r"|poster un commentaire|laisser un commentaire|soyez le premier à commenter.*|wpdiscuz|articles similaires"
    r"|sur le même sujet|dans la même rubrique)$",
    re.IGNORECASE,
)
# Sentences inside a paragraph that are subscription or gallery widgets (seen inline in one-line bodies).
_BOILERPLATE_SENTENCE = re.compile(
    r"abonnez-vous|en vous abonnant|galerie photo|cliquez pour agrandir|inscrivez-vous à (?:la|notre) newsletter"
    r"|un journalisme de qualité est plus crucial",
    re.IGNORECASE,
)
# " date 2025-08-21 Body..." or " date 2025-07 Body..." at the very start of a crawled text.
_DATE_PREFIX = re.compile(r"^\s*date\s+(\d{4}-\d{2}(?:-\d{2})?)\b\s*")
_DMY_LINE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{2}|\d{4})$")
_TIME_LINE = re.compile(r"^\d{1,2}[:h]\d{2}$")
# A sentence ends at . ! ? or … (optionally followed by a closing quote) before a capital or an opening quote.
# The closing quote after the end mark is captured so it stays with its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…])(\s?[»\"”’)])?\s+(?=[«\"“(]?\s?[A-ZÀ-ÖØ-Þ0-9])")
_ABBREVIATIONS = re.compile(r"(?:\b(?:M|MM|Mme|Dr|St|Ste|art|av|J\.-C|etc|cf|p|n°|No|vol|ch)|\b[A-Z])\.$")
_ABBREVIATION_TAIL = 8  # longest abbreviation ("J.-C.") plus the character its \b looks at


@dataclass(frozen=True)
class Passage:
    index: int
    text: str
    is_title: bool = False

    @property
    def digest(self) -> str:
        return text_digest(self.text)


@dataclass
class Article:
    id: str
    title: str | None
    date: str | None
    passages: list[Passage] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.passages]


def text_digest(text: str) -> str:
    """Short stable digest of a passage's normalized text (NFC, collapsed whitespace)."""
    norm = " ".join(unicodedata.normalize("NFC", text).split())
    # surrogatepass: a lone surrogate (text decoded with errors="surrogateescape") gets a digest, not a crash;
    # valid text encodes exactly as before, so existing digests are unchanged.
    return hashlib.sha1(norm.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def split_sentences(text: str) -> list[str]:
    parts = _SENTENCE_END.split(text)  # [sentence, closing quote or None, sentence, ...]
    pieces = [p + (parts[i + 1] or "") if i + 1 < len(parts) else p for i, p in enumerate(parts) if i % 2 == 0]
    # Each sentence is held as its pieces and joined once: re-joining a growing string, and searching all of
    # it, made "A. B. C. ..." quadratic (a 1 MB run of initials took 15 s).
    sentences: list[list[str]] = []
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        # Re-join splits made after an abbreviation such as "M." or an initial (only the tail can match: the
        # pattern is anchored at the end).
        tail = " ".join(sentences[-1][-_ABBREVIATION_TAIL:])[-_ABBREVIATION_TAIL:] if sentences else ""
        if sentences and _ABBREVIATIONS.search(tail):
            sentences[-1].append(piece)
        else:
            sentences.append([piece])
    return [" ".join(parts) for parts in sentences]


def _windows(sentences: list[str], max_chars: int) -> list[str]:
    """Greedy windows of consecutive sentences, each at most max_chars (a longer sentence is cut at spaces)."""
    windows: list[str] = []
    current = ""
    for sentence in sentences:
        # A run-on sentence: cut at the last space before the limit. Offsets, not re-slicing the remainder,
        # keep a 10 MB sentence linear.
        start = 0
        while len(sentence) - start > max_chars:
            cut = sentence.rfind(" ", start, start + max_chars) - start
            cut = cut if cut > max_chars // 2 else max_chars
            if current:
                windows.append(current)
                current = ""
            windows.append(sentence[start:start + cut].strip())
            start += cut
            while start < len(sentence) and sentence[start] == " ":
                start += 1
        sentence = sentence[start:]
        if current and len(current) + 1 + len(sentence) > max_chars:
            windows.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        windows.append(current)
    return windows


def _clean(text: str) -> str:
    text = text.replace("\x00", " ").replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    return "\n".join(" ".join(line.replace("\xa0", " ").split()) for line in text.split("\n"))


def _valid_date(year: str, month: str, day: str | None = None) -> bool:
    try:
        datetime.date(int(year), int(month), int(day or 1))
    except ValueError:
        return False
    return True


def _looks_like_title(line: str) -> bool:
    return len(line) <= 200 and not line.rstrip().endswith((".", "!", "?", "»", '"', ":")) and len(line.split()) >= 3


def read_article(text: str, id: str = "", max_chars: int = MAX_PASSAGE_CHARS) -> Article:
    """Parse raw article text into an Article: date header, title, passages (boilerplate dropped)."""
    if max_chars < 1:  # a window of 0 characters never advances
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    lines = [line for line in _clean(text).split("\n") if line]
    date: str | None = None
    if lines:
        m = _DATE_PREFIX.match(lines[0])
        if m:
            # The header is crawler furniture even when its date is impossible: drop it, keep no date.
            date = m.group(1) if _valid_date(*m.group(1).split("-")) else None
            rest = lines[0][m.end():].strip()
            lines = ([rest] if rest else []) + lines[1:]
    if len(lines) >= 1 and (m := _DMY_LINE.match(lines[0])):
        day, month, year = m.groups()
        year = year if len(year) == 4 else f"20{year}"
        if _valid_date(year, month, day):
            date = f"{year}-{month}-{day}"
            lines = lines[1:]
            if lines and _TIME_LINE.match(lines[0]):
                lines = lines[1:]
    footer = next((i for i, line in enumerate(lines) if _FOOTER_START.match(line)), len(lines))
    paragraphs = [line for line in lines[:footer] if not _BOILERPLATE_LINES.match(line)]
    title = paragraphs[0] if paragraphs and _looks_like_title(paragraphs[0]) and len(paragraphs) > 1 else None

    passages: list[Passage] = []
    for p_index, paragraph in enumerate(paragraphs):
        if _BOILERPLATE_SENTENCE.search(paragraph):
            paragraph = " ".join(s for s in split_sentences(paragraph) if not _BOILERPLATE_SENTENCE.search(s))
        if not paragraph:
            continue
        chunks = [paragraph] if len(paragraph) <= max_chars else _windows(split_sentences(paragraph), max_chars)
        for chunk in chunks:
            passages.append(Passage(len(passages), chunk, is_title=(p_index == 0 and title is not None)))
    if title is not None and not (passages and passages[0].is_title):
        title = None  # the title line was all boilerplate ("0 0 ABONNEZ-VOUS"): nothing of it is kept
    return Article(id=id, title=title, date=date, passages=passages)
