"""IFEval's 25 instruction types: ids, kwargs and check semantics as IFEval defines them.

The code is ours; the semantics follow the published implementation (google-research
``instruction_following_eval``), differences listed in docs/constraints.md.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from typing import ClassVar

from ecd.constraints.base import ConstraintType, register, relation_ok
from ecd.constraints.text import (
    chunks,
    content_words,
    count_sentences,
    count_words,
    detect_language,
    word_tokenize,
)

#: What the samplers draw, inclusive ranges (IFEval names its own the same way: ``_NUM_PARAGRAPHS``, ...).
#: Counts a requirement asks for beyond what the current answer has are drawn as that excess, so
#: that the answer misses the new requirement.
EXTRA_OCCURRENCES = (1, 3)  #: keywords:frequency, detectable_content:number_placeholders: beyond the answer's
EXTRA_CAPITAL_WORDS = (1, 5)  #: change_case:capital_word_frequency: beyond the answer's
NUM_BULLETS = (2, 5)  #: detectable_format:number_bullet_lists
NUM_PARAGRAPHS = (2, 4)  #: length_constraints:number_paragraphs
NUM_SECTIONS = (2, 4)  #: detectable_format:multiple_sections
NTH_PARAGRAPH_OF = (2, 3)  #: length_constraints:nth_paragraph_first_word: paragraphs (the nth drawn among them)
NUM_HIGHLIGHTS = (1, 3)  #: detectable_format:number_highlighted_sections
NUM_WORDS = (100, 500)  #: length_constraints:number_words
NUM_SENTENCES = (1, 20)  #: length_constraints:number_sentences
LETTER_FREQUENCY = (1, 10)  #: keywords:letter_frequency


# ---------------------------------------------------------------------------------------------
# Case and punctuation (style branch)


class _EnglishCase(ConstraintType):
    """All letters in one case, and English as langdetect sees it (IFEval's rule)."""

    category = "style/case"
    phase = 85

    #: capitals (True) or lowercase (False)
    upper: ClassVar[bool]

    def in_case(self, text: str) -> bool:
        return text.isupper() if self.upper else text.islower()

    def to_case(self, text: str) -> str:
        return text.upper() if self.upper else text.lower()

    def check(self, response, kwargs):
        if not self.in_case(response):
            return False
        lang = detect_language(response)
        return lang is None or lang == "en"

    def rewrite(self, text, kwargs):
        return self.to_case(text)


@register
class EnglishLowercase(_EnglishCase):
    """The whole answer in English and in lowercase.

    Returns:
        True when ``str.islower`` holds for the answer and langdetect reads it as English (or cannot tell).
    """

    id = "change_case:english_lowercase"
    conflicts = frozenset({"change_case:english_capital", "detectable_format:multiple_sections"})
    upper = False
    templates = (
        "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
        "Write your whole answer in English using only lowercase letters; capital letters are not allowed.",
    )


@register
class EnglishCapital(_EnglishCase):
    """The whole answer in English and in capitals.

    Returns:
        True when ``str.isupper`` holds for the answer and langdetect reads it as English (or cannot tell).
    """

    id = "change_case:english_capital"
    conflicts = frozenset({"change_case:english_lowercase", "detectable_format:multiple_sections"})
    upper = True
    templates = (
        "Your entire response should be in English, and in all capital letters.",
        "Respond in English, writing every letter of your answer in capitals.",
    )


@register
class NoComma(ConstraintType):
    """No comma anywhere.

    Returns:
        True when the answer holds no ``,``.
    """

    id = "punctuation:no_comma"
    category = "style/punctuation"
    phase = 80
    templates = (
        "In your entire response, refrain from the use of any commas.",
        "Do not use any commas in your response.",
        "Your answer must not contain a single comma.",
    )

    def check(self, response, kwargs):
        return "," not in response

    def rewrite(self, text, kwargs):
        text = re.sub(r" ?,[ \t]*", " ", text)
        return re.sub(r"[ \t]+$", "", text, flags=re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# Start and end (format branch)


@register
class Quotation(ConstraintType):
    """The whole answer wrapped in double quotation marks.

    Returns:
        True when the stripped answer is longer than one character and starts and ends with ``"``.
    """

    id = "startend:quotation"
    category = "format/wrapping"
    phase = 95
    conflicts = frozenset({"detectable_format:number_bullet_lists", "combination:repeat_prompt"})
    templates = (
        "Wrap your entire response with double quotation marks.",
        "Put your whole answer inside double quotation marks.",
    )

    def check(self, response, kwargs):
        value = response.strip()
        return len(value) > 1 and value[0] == '"' and value[-1] == '"'

    def rewrite(self, text, kwargs):
        return f'"{text.strip()}"'


_END_PHRASES = ("Any other questions?", "Is there anything else I can help with?")


@register
class EndChecker(ConstraintType):
    """The answer ends with an exact phrase.

    Args:
        end_phrase: the closing phrase, one of IFEval's two.

    Returns:
        True when the answer, stripped of whitespace and outer ``"``, ends with the phrase (any case).
    """

    id = "startend:end_checker"
    category = "format/ending"
    phase = 60
    templates = (
        "Finish your response with this exact phrase {end_phrase}. No other words should follow this phrase.",
        "End your answer with the exact phrase \"{end_phrase}\" and write nothing after it.",
    )

    def sample(self, rng, ctx):
        return {"end_phrase": rng.choice(_END_PHRASES)}

    def check(self, response, kwargs):
        value = response.strip().strip('"').lower()
        return value.endswith(kwargs["end_phrase"].strip().lower())

    def rewrite(self, text, kwargs):
        return f"{text.rstrip()}\n{kwargs['end_phrase'].strip()}"

    def words(self, kwargs):
        return set(re.findall(r"[a-z]+", kwargs["end_phrase"].lower()))


@register
class Title(ConstraintType):
    """A title in double angular brackets.

    Returns:
        True when some line holds ``<<...>>`` with a non-blank title inside.
    """

    id = "detectable_format:title"
    category = "format/title"
    phase = 50
    conflicts = frozenset({"length_constraints:nth_paragraph_first_word", "combination:repeat_prompt"})
    templates = (
        "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
        "Give your answer a title wrapped in double angular brackets, for example <<my title>>.",
    )

    def check(self, response, kwargs):
        return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", response))

    def rewrite(self, text, kwargs):
        first = re.findall(r"[A-Za-z]+", text)[:4] or ["Answer"]
        return f"<<{' '.join(first).title()}>>\n{text.lstrip()}"


@register
class Postscript(ConstraintType):
    """A postscript starting with a marker.

    Args:
        postscript_marker: ``"P.S."`` or ``"P.P.S"``.

    Returns:
        True when a line (any case) holds the marker, IFEval's loose spacing between its letters allowed.
    """

    id = "detectable_content:postscript"
    category = "content/postscript"
    phase = 20
    templates = (
        "At the end of your response, please explicitly add a postscript starting with {postscript_marker}",
        "Add a postscript at the end of your answer that starts with {postscript_marker}",
    )

    def sample(self, rng, ctx):
        return {"postscript_marker": rng.choice(("P.S.", "P.P.S"))}

    def check(self, response, kwargs):
        marker = kwargs["postscript_marker"].strip()
        value = response.lower()
        if marker == "P.P.S":
            pattern = r"\s*p\.\s?p\.\s?s.*$"
        elif marker == "P.S.":
            pattern = r"\s*p\.\s?s\..*$"
        else:
            pattern = r"\s*" + marker.lower() + r".*$"
        return bool(re.findall(pattern, value, flags=re.MULTILINE))

    def rewrite(self, text, kwargs):
        return f"{text.rstrip()}\n\n{kwargs['postscript_marker'].strip()} I hope this helps."

    def words(self, kwargs):
        return {"hope", "this", "helps"}


# ---------------------------------------------------------------------------------------------
# Keywords and content (content branch)


@register
class KeywordsExistence(ConstraintType):
    """Keywords that must appear.

    Args:
        keywords: the words, drawn from the instruction's content words the answer lacks.

    Returns:
        True when each keyword matches somewhere in the answer (as a pattern, any case, inside words too).
    """

    id = "keywords:existence"
    category = "content/keywords"
    phase = 10
    templates = (
        "Include keywords {keywords_text} in the response.",
        "Make sure your answer uses the words {keywords_text}.",
    )

    def format_args(self, kwargs):
        return {"keywords_text": " and ".join(kwargs["keywords"])}

    def sample(self, rng, ctx):
        pool = [w for w in content_words(ctx.instruction + " " + ctx.title) if w not in ctx.response.lower()]
        if not pool:
            return None
        return {"keywords": sorted(rng.sample(pool, k=min(2, len(pool))))}

    def check(self, response, kwargs):
        return all(re.search(k, response, flags=re.IGNORECASE) for k in kwargs["keywords"])

    def rewrite(self, text, kwargs):
        missing = [k for k in kwargs["keywords"] if not re.search(k, text, flags=re.IGNORECASE)]
        if not missing:
            return text
        return f"{text.rstrip()}\nThis touches on {' and '.join(missing)}."

    def words(self, kwargs):
        return {k.lower() for k in kwargs["keywords"]}


@register
class KeywordFrequency(ConstraintType):
    """A keyword used at least, or fewer than, a number of times.

    Args:
        keyword: the word counted (as a pattern, any case, inside words too).
        frequency: the threshold, drawn as the answer's count plus ``EXTRA_OCCURRENCES``.
        relation: ``"at least"`` or ``"less than"``.

    Returns:
        True when the count stands in ``relation`` to ``frequency``.
    """

    id = "keywords:frequency"
    category = "content/keywords"
    phase = 10
    templates = (
        "In your response, the word {keyword} should appear {relation} {frequency} times.",
        "Use the word \"{keyword}\" {relation} {frequency} times in your answer.",
    )

    def sample(self, rng, ctx):
        pool = content_words(ctx.instruction + " " + ctx.response)
        if not pool:
            return None
        keyword = rng.choice(pool)
        have = len(re.findall(keyword, ctx.response, flags=re.IGNORECASE))
        return {"keyword": keyword, "frequency": have + rng.randint(*EXTRA_OCCURRENCES), "relation": "at least"}

    def check(self, response, kwargs):
        n = len(re.findall(kwargs["keyword"], response, flags=re.IGNORECASE))
        return relation_ok(n, kwargs["relation"], kwargs["frequency"])

    def rewrite(self, text, kwargs):
        if kwargs["relation"] != "at least":
            return None
        need = kwargs["frequency"] - len(re.findall(kwargs["keyword"], text, flags=re.IGNORECASE))
        extra = " ".join(f"The word {kwargs['keyword']} matters here." for _ in range(max(need, 0)))
        return f"{text.rstrip()}\n{extra}" if extra else text

    def words(self, kwargs):
        return {kwargs["keyword"].lower()}


@register
class ForbiddenWords(ConstraintType):
    """Words that must not appear.

    Args:
        forbidden_words: the words, drawn from the answer's content words (never the title's).

    Returns:
        True when none of them occurs as a whole word, any case.
    """

    id = "keywords:forbidden_words"
    category = "content/keywords"
    phase = 15
    templates = (
        "Do not include keywords {forbidden_text} in the response.",
        "Avoid the words {forbidden_text} anywhere in your answer.",
    )

    def format_args(self, kwargs):
        return {"forbidden_text": " and ".join(kwargs["forbidden_words"])}

    def sample(self, rng, ctx):
        title_words = {w.lower() for w in re.findall(r"[A-Za-z]+", ctx.title)}
        pool = [w for w in content_words(ctx.response) if w not in title_words]
        if not pool:
            return None
        return {"forbidden_words": sorted(rng.sample(pool, k=min(2, len(pool))))}

    def check(self, response, kwargs):
        return not any(
            re.search(r"\b" + w + r"\b", response, flags=re.IGNORECASE) for w in kwargs["forbidden_words"]
        )

    def rewrite(self, text, kwargs):
        for w in kwargs["forbidden_words"]:
            text = re.sub(r"[ \t]*\b" + re.escape(w) + r"\b", "", text, flags=re.IGNORECASE)
        return text


@register
class Placeholders(ConstraintType):
    """Square-bracket placeholders such as ``[address]``.

    Args:
        num_placeholders: the least number, drawn as the answer's count plus ``EXTRA_OCCURRENCES``.

    Returns:
        True when the answer holds at least that many ``[...]``.
    """

    id = "detectable_content:number_placeholders"
    category = "content/placeholders"
    phase = 10
    templates = (
        "The response must contain at least {num_placeholders} placeholders represented by square brackets, such as [address].",
        "Include at least {num_placeholders} placeholders in square brackets, like [name], in your answer.",
    )
    _names = ("name", "date", "address", "company", "city", "email", "phone number", "amount")

    def sample(self, rng, ctx):
        have = len(re.findall(r"\[.*?\]", ctx.response))
        return {"num_placeholders": have + rng.randint(*EXTRA_OCCURRENCES)}

    def check(self, response, kwargs):
        return len(re.findall(r"\[.*?\]", response)) >= kwargs["num_placeholders"]

    def rewrite(self, text, kwargs):
        need = kwargs["num_placeholders"] - len(re.findall(r"\[.*?\]", text))
        if need <= 0:
            return text
        names = [self._names[i % len(self._names)] for i in range(need)]
        return f"{text.rstrip()}\nFill in: " + " ".join(f"[{n}]" for n in names)

    def words(self, kwargs):
        return {"fill", "in"} | {w for n in self._names for w in n.split()}


# ---------------------------------------------------------------------------------------------
# Layout (format branch)


LAYOUT = frozenset(
    {
        "detectable_format:number_bullet_lists",
        "length_constraints:number_paragraphs",
        "detectable_format:multiple_sections",
        "length_constraints:nth_paragraph_first_word",
        "detectable_format:number_highlighted_sections",
    }
)


@register
class BulletLists(ConstraintType):
    """An exact number of markdown bullet points.

    Args:
        num_bullets: the number, drawn from ``NUM_BULLETS``.

    Returns:
        True when the lines starting with ``* `` or ``-`` (after indentation) number exactly ``num_bullets``.
    """

    id = "detectable_format:number_bullet_lists"
    category = "format/layout"
    phase = 40
    conflicts = LAYOUT - {"detectable_format:number_bullet_lists"} | {"startend:quotation"}
    templates = (
        "Your answer must contain exactly {num_bullets} bullet points. Use the markdown bullet points such as:\n* This is point 1. \n* This is point 2",
        "Format your answer as exactly {num_bullets} markdown bullet points, each starting with \"* \".",
    )

    def sample(self, rng, ctx):
        return {"num_bullets": rng.randint(*NUM_BULLETS)}

    @staticmethod
    def count(response: str) -> int:
        stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
        return len(stars) + len(dashes)

    def check(self, response, kwargs):
        return self.count(response) == kwargs["num_bullets"]

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_bullets"])
        if pieces is None:
            return None
        return "\n".join(f"* {p}" for p in pieces)


@register
class Paragraphs(ConstraintType):
    """An exact number of paragraphs separated by ``***``.

    Args:
        num_paragraphs: the number, drawn from ``NUM_PARAGRAPHS``.

    Returns:
        True when splitting on ``***`` gives that many paragraphs, with no empty one inside (an empty
        first or last piece is not counted).
    """

    id = "length_constraints:number_paragraphs"
    category = "format/layout"
    phase = 40
    conflicts = LAYOUT - {"length_constraints:number_paragraphs"}
    templates = (
        "There should be {num_paragraphs} paragraphs. Paragraphs are separated with the markdown divider: ***",
        "Write exactly {num_paragraphs} paragraphs, separated from each other by the markdown divider ***.",
    )

    def sample(self, rng, ctx):
        return {"num_paragraphs": rng.randint(*NUM_PARAGRAPHS)}

    def check(self, response, kwargs):
        paragraphs = re.split(r"\s?\*\*\*\s?", response)
        n = len(paragraphs)
        for i, p in enumerate(paragraphs):
            if not p.strip():
                if i in (0, len(paragraphs) - 1):
                    n -= 1
                else:
                    return False
        return n == kwargs["num_paragraphs"]

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_paragraphs"])
        return None if pieces is None else "\n\n***\n\n".join(pieces)


@register
class Sections(ConstraintType):
    """A least number of sections marked ``Section X``.

    Args:
        section_spliter: the marker word, ``"Section"`` or ``"SECTION"`` (IFEval's spelling of the key).
        num_sections: the least number, drawn from ``NUM_SECTIONS``.

    Returns:
        True when the marker followed by a number occurs at least ``num_sections`` times.
    """

    id = "detectable_format:multiple_sections"
    category = "format/layout"
    phase = 40
    conflicts = LAYOUT - {"detectable_format:multiple_sections"} | {
        "change_case:english_lowercase",
        "change_case:english_capital",
    }
    templates = (
        "Your response must have {num_sections} sections. Mark the beginning of each section with {section_spliter} X, such as:\n{section_spliter} 1\n[content of section 1]\n{section_spliter} 2\n[content of section 2]",
        "Organise your answer in {num_sections} sections, each starting with \"{section_spliter} X\" where X is its number.",
    )

    def sample(self, rng, ctx):
        return {"section_spliter": rng.choice(("Section", "SECTION")), "num_sections": rng.randint(*NUM_SECTIONS)}

    def check(self, response, kwargs):
        pattern = r"\s?" + kwargs["section_spliter"].strip() + r"\s?\d+\s?"
        return len(re.split(pattern, response)) - 1 >= kwargs["num_sections"]

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_sections"])
        if pieces is None:
            return None
        mark = kwargs["section_spliter"].strip()
        return "\n\n".join(f"{mark} {i}\n{p}" for i, p in enumerate(pieces, 1))

    def words(self, kwargs):
        return {"section"}


@register
class NthParagraphFirstWord(ConstraintType):
    """An exact number of blank-line paragraphs, the nth starting with a given word.

    Args:
        num_paragraphs: the number of paragraphs, drawn from ``NTH_PARAGRAPH_OF``.
        nth_paragraph: which one (from 1) must start with the word.
        first_word: the word, drawn from the instruction's content words.

    Returns:
        True when the non-empty ``\n\n`` paragraphs number ``num_paragraphs`` and the nth one's first
        word, cut at its first punctuation mark, is ``first_word`` (any case).
    """

    id = "length_constraints:nth_paragraph_first_word"
    category = "format/layout"
    phase = 40
    conflicts = LAYOUT - {"length_constraints:nth_paragraph_first_word"} | {"detectable_format:title"}
    templates = (
        "There should be {num_paragraphs} paragraphs. Paragraphs and only paragraphs are separated with each other by two new lines as if it was '\\n\\n' in python. Paragraph {nth_paragraph} must start with word {first_word}.",
        "Write {num_paragraphs} paragraphs separated by blank lines; paragraph {nth_paragraph} must begin with the word \"{first_word}\".",
    )

    def sample(self, rng, ctx):
        pool = content_words(ctx.instruction)
        if not pool:
            return None
        n = rng.randint(*NTH_PARAGRAPH_OF)
        return {"num_paragraphs": n, "nth_paragraph": rng.randint(1, n), "first_word": rng.choice(pool)}

    def check(self, response, kwargs):
        paragraphs = re.split(r"\n\n", response)
        n = sum(1 for p in paragraphs if p.strip())
        nth = kwargs["nth_paragraph"]
        if nth > n:
            return False
        paragraph = paragraphs[nth - 1].strip()
        if not paragraph:
            return False
        word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
        first = ""
        for ch in word:
            if ch in '.,?!\'"':
                break
            first += ch.lower()
        return n == kwargs["num_paragraphs"] and first == kwargs["first_word"].lower()

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_paragraphs"])
        if pieces is None:
            return None
        nth = kwargs["nth_paragraph"] - 1
        pieces[nth] = f"{kwargs['first_word'].capitalize()} {pieces[nth]}"
        return "\n\n".join(p.replace("\n\n", "\n") for p in pieces)

    def words(self, kwargs):
        return {kwargs["first_word"].lower()}


@register
class HighlightedSections(ConstraintType):
    """A least number of markdown highlights, ``*like this*``.

    Args:
        num_highlights: the least number, drawn from ``NUM_HIGHLIGHTS``.

    Returns:
        True when the non-blank ``*...*`` and ``**...**`` spans on one line number at least ``num_highlights``.
    """

    id = "detectable_format:number_highlighted_sections"
    category = "format/emphasis"
    phase = 30
    conflicts = frozenset({"detectable_format:number_bullet_lists"})
    templates = (
        "Highlight at least {num_highlights} sections in your answer with markdown, i.e. *highlighted section*.",
        "Use markdown to highlight at least {num_highlights} parts of your answer, like *this part*.",
    )

    def sample(self, rng, ctx):
        return {"num_highlights": rng.randint(*NUM_HIGHLIGHTS)}

    @staticmethod
    def count(response: str) -> int:
        n = sum(1 for h in re.findall(r"\*[^\n\*]*\*", response) if h.strip("*").strip())
        n += sum(1 for h in re.findall(r"\*\*[^\n\*]*\*\*", response) if h[2:-2].strip())
        return n

    def check(self, response, kwargs):
        return self.count(response) >= kwargs["num_highlights"]

    def rewrite(self, text, kwargs):
        need = kwargs["num_highlights"] - self.count(text)
        if need <= 0:
            return text
        words = re.findall(r"\b[A-Za-z]{3,}\b", text)
        out, done, used = text, 0, set()
        for w in words:
            if done == need:
                break
            if w in used:
                continue
            used.add(w)
            out, k = re.subn(r"(?<![\w*])" + re.escape(w) + r"(?![\w*])", f"*{w}*", out, count=1)
            done += k
        if done < need:
            out += "\n" + " ".join("*note*" for _ in range(need - done))
        return out


# ---------------------------------------------------------------------------------------------
# Length, language, structure and combination


#: IFEval's languages (ISO 639-1) for ``language:response_language``
LANGUAGES = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi", "fr": "French",
    "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian", "bn": "Bengali", "uk": "Ukrainian",
    "th": "Thai", "ur": "Urdu", "ta": "Tamil", "te": "Telugu", "bg": "Bulgarian", "ko": "Korean", "pl": "Polish",
    "he": "Hebrew", "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili", "kn": "Kannada",
    "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish",
}
RELATIONS = ("less than", "at least")


@register
class ResponseLanguage(ConstraintType):
    """The whole answer in one language.

    Args:
        language: its ISO 639-1 code, one of ``LANGUAGES``.

    Returns:
        True when langdetect reads the answer as that language (or cannot tell).
    """

    id = "language:response_language"
    category = "style/language"
    templates = (
        "Your ENTIRE response should be in {language_name} language, no other language is allowed.",
        "Answer only in {language_name}; no other language is allowed.",
    )

    def format_args(self, kwargs):
        return {"language_name": LANGUAGES.get(kwargs["language"], kwargs["language"])}

    def sample(self, rng, ctx):
        return {"language": rng.choice(sorted(LANGUAGES))}

    def check(self, response, kwargs):
        lang = detect_language(response)
        return lang is None or lang == kwargs["language"]


@register
class NumberWords(ConstraintType):
    """A word count below or above a threshold.

    Args:
        num_words: the threshold, drawn from ``NUM_WORDS``.
        relation: ``"at least"`` or ``"less than"``.

    Returns:
        True when the answer's word count (IFEval's tokenizer) stands in ``relation`` to ``num_words``.
    """

    id = "length_constraints:number_words"
    category = "format/length"
    templates = ("Answer with {relation} {num_words} words.", "Your answer should contain {relation} {num_words} words.")

    def sample(self, rng, ctx):
        return {"num_words": rng.randint(*NUM_WORDS), "relation": rng.choice(RELATIONS)}

    def check(self, response, kwargs):
        return relation_ok(count_words(response), kwargs["relation"], kwargs["num_words"])


@register
class NumberSentences(ConstraintType):
    """A sentence count below or above a threshold.

    Args:
        num_sentences: the threshold, drawn from ``NUM_SENTENCES``.
        relation: ``"at least"`` or ``"less than"``.

    Returns:
        True when the answer's sentence count (IFEval's splitter) stands in ``relation`` to ``num_sentences``.
    """

    id = "length_constraints:number_sentences"
    category = "format/length"
    templates = (
        "Your response should contain {relation} {num_sentences} sentences.",
        "Write {relation} {num_sentences} sentences.",
    )

    def sample(self, rng, ctx):
        return {"num_sentences": rng.randint(*NUM_SENTENCES), "relation": rng.choice(RELATIONS)}

    def check(self, response, kwargs):
        return relation_ok(count_sentences(response), kwargs["relation"], kwargs["num_sentences"])


@register
class LetterFrequency(ConstraintType):
    """A letter used at least, or fewer than, a number of times.

    Args:
        letter: the letter, any case.
        let_frequency: the threshold, drawn from ``LETTER_FREQUENCY``.
        let_relation: ``"at least"`` or ``"less than"``.

    Returns:
        True when the letter's count in the lowercased answer stands in ``let_relation`` to ``let_frequency``.
    """

    id = "keywords:letter_frequency"
    category = "content/keywords"
    templates = (
        "In your response, the letter {letter} should appear {let_relation} {let_frequency} times.",
        "Use the letter \"{letter}\" {let_relation} {let_frequency} times in your answer.",
    )

    def sample(self, rng, ctx):
        return {"letter": rng.choice(string.ascii_lowercase), "let_frequency": rng.randint(*LETTER_FREQUENCY),
                "let_relation": rng.choice(RELATIONS)}

    def check(self, response, kwargs):
        n = Counter(response.lower())[kwargs["letter"].strip().lower()]
        return relation_ok(n, kwargs["let_relation"], kwargs["let_frequency"])


@register
class CapitalWordFrequency(ConstraintType):
    """Words written all in capitals, at least or fewer than a number of times.

    Args:
        capital_frequency: the threshold, drawn as the answer's count plus ``EXTRA_CAPITAL_WORDS``.
        capital_relation: ``"at least"`` or ``"less than"`` (drawn: ``"at least"``).

    Returns:
        True when the tokens with ``str.isupper`` stand in ``capital_relation`` to ``capital_frequency``.
    """

    id = "change_case:capital_word_frequency"
    category = "style/case"
    phase = 86
    conflicts = frozenset({"change_case:english_lowercase", "change_case:english_capital",
                           "detectable_format:multiple_sections"})
    templates = (
        "In your response, words with all capital letters should appear {capital_relation} {capital_frequency} times.",
        "Use {capital_relation} {capital_frequency} words written entirely in capital letters.",
    )

    def sample(self, rng, ctx):
        have = self.count(ctx.response)
        return {"capital_frequency": have + rng.randint(*EXTRA_CAPITAL_WORDS), "capital_relation": "at least"}

    @staticmethod
    def count(response: str) -> int:
        return sum(1 for w in word_tokenize(response) if w.isupper())

    def check(self, response, kwargs):
        return relation_ok(self.count(response), kwargs["capital_relation"], kwargs["capital_frequency"])

    def rewrite(self, text, kwargs):
        if kwargs["capital_relation"] != "at least":
            return None
        need = kwargs["capital_frequency"] - self.count(text)
        if need <= 0:
            return text
        # whole words, hyphens and apostrophes included, so that the tokenizer sees them all in capitals
        words = [m for m in re.finditer(r"(?<![\w'-])[A-Za-z][A-Za-z'-]*[A-Za-z](?![\w'-])", text)
                 if not m.group().isupper()]
        if len(words) < need:
            return None
        out, last = [], 0
        for m in words[:need]:
            out += [text[last : m.start()], m.group().upper()]
            last = m.end()
        return "".join(out) + text[last:]


@register
class JsonFormat(ConstraintType):
    """The whole answer as JSON.

    Returns:
        True when the answer, with markdown code fences stripped, parses as JSON.
    """

    id = "detectable_format:json_format"
    category = "format/structure"
    phase = 99
    conflicts = frozenset({
        "startend:quotation", "startend:end_checker", "change_case:english_capital",
        "detectable_format:number_bullet_lists", "length_constraints:nth_paragraph_first_word",
        "combination:repeat_prompt", "combination:two_responses", "change_case:capital_word_frequency",
    })
    templates = (
        "Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",
        "Format your entire answer as valid JSON.",
    )

    def check(self, response, kwargs):
        value = response.strip()
        for prefix in ("```json", "```Json", "```JSON", "```"):
            value = value.removeprefix(prefix)
        value = value.removesuffix("```").strip()
        try:
            json.loads(value)
        except ValueError:
            return False
        return True

    def rewrite(self, text, kwargs):
        return json.dumps({"answer": text}, ensure_ascii=False)

    def words(self, kwargs):
        return {"answer"}


@register
class ConstrainedResponse(ConstraintType):
    """One of IFEval's three fixed answers (``My answer is yes.`` and kin).

    Returns:
        True when one of the three sentences occurs in the answer.
    """

    id = "detectable_format:constrained_response"
    category = "format/choice"
    phase = 57  # before the closing question or end phrase, which must stay last
    conflicts = frozenset({"change_case:english_lowercase", "change_case:english_capital"})
    options: ClassVar[tuple[str, ...]] = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    templates = ("Answer with one of the following options: ('My answer is yes.', 'My answer is no.', 'My answer is maybe.')",)

    def check(self, response, kwargs):
        value = response.strip()
        return any(o in value for o in self.options)

    def rewrite(self, text, kwargs):
        return text if self.check(text, kwargs) else f"{text.rstrip()}\n{self.options[2]}"

    def words(self, kwargs):
        return {"my", "answer", "is", "maybe"}


@register
class TwoResponses(ConstraintType):
    """Two different answers separated by ``******``.

    Returns:
        True when splitting on ``******`` gives exactly two non-empty, different answers (an empty first
        or last piece allowed, none between).
    """

    id = "combination:two_responses"
    category = "breadth/alternatives"
    phase = 97
    conflicts = frozenset({
        "detectable_format:number_bullet_lists", "length_constraints:number_paragraphs",
        "length_constraints:nth_paragraph_first_word", "detectable_format:json_format",
    })
    templates = (
        "Give two different responses. Responses and only responses should be separated by 6 asterisk symbols: ******.",
        "Write two different answers, separated by a line of six asterisks (******).",
    )

    def check(self, response, kwargs):
        parts = response.split("******")
        valid = []
        for i, p in enumerate(parts):
            if not p.strip():
                if i not in (0, len(parts) - 1):
                    return False
            else:
                valid.append(p)
        return len(valid) == 2 and valid[0].strip() != valid[1].strip()

    def rewrite(self, text, kwargs):
        if "******" in text:
            return None
        # the second answer is the first as a markdown quote: different, and neutral to case and digits
        return f"{text}\n******\n> {text}"


@register
class RepeatPrompt(ConstraintType):
    """The request repeated word for word before the answer.

    Args:
        prompt_to_repeat: the request to repeat (drawn: the instruction so far).

    Returns:
        True when the stripped answer starts with the stripped request, any case.
    """

    id = "combination:repeat_prompt"
    category = "breadth/repetition"
    templates = (
        "First repeat the request word for word without change, then give your answer (1. do not say any words or characters before repeating the request; 2. the request you need to repeat does not include this sentence)",
    )

    phase = 98  # prepended after every other rewrite but JSON
    conflicts = frozenset({
        "punctuation:no_comma", "keywords:forbidden_words", "change_case:english_lowercase",
        "change_case:english_capital", "ecd:no_digits", "ecd:no_exclamation", "detectable_format:number_bullet_lists",
        "length_constraints:number_paragraphs", "length_constraints:nth_paragraph_first_word",
        "detectable_format:multiple_sections", "detectable_format:number_highlighted_sections",
    })

    def sample(self, rng, ctx):
        return {"prompt_to_repeat": ctx.instruction}

    def check(self, response, kwargs):
        return response.strip().lower().startswith(kwargs["prompt_to_repeat"].strip().lower())

    def rewrite(self, text, kwargs):
        return f"{kwargs['prompt_to_repeat'].strip()}\n\n{text.lstrip()}"
