"""Text measurements shared by the checks: words, sentences, tokens, language, content words."""

from __future__ import annotations

import functools
import re

def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of ``\\w`` characters."""
    return len(re.findall(r"\w+", text))


#: Abbreviations whose period does not end a sentence. IFEval splits sentences with NLTK's Punkt
#: model trained on English (``punkt/english.pickle``), which cannot be downloaded here; an untrained
#: Punkt tokenizer with this list of common English abbreviations stands in for it.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st vs etc e.g i.e u.s u.k u.n a.m p.m inc ltd corp dept est approx fig
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun no. vol rev gen col lt
    sgt capt cmdr gov sen rep pres ave blvd rd mt ft oz lb lbs pp ed eds al cf viz""".replace("no.", "").split()
)


@functools.lru_cache(maxsize=1)
def _sentence_tokenizer():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    """Sentences as Punkt finds them (offline, deterministic)."""
    return _sentence_tokenizer().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """NLTK's ``word_tokenize``: Punkt sentences, then the Treebank-style word tokenizer on each."""
    tok = _word_tokenizer()
    return [w for sentence in split_sentences(text) for w in tok.tokenize(sentence)]


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


