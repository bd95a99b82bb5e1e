"""The constraint library shared by evolution, verification, pairing and evaluation.

One class per instruction type, as in IFEval's registry: each type knows how to sample its own
parameters, phrase the requirement, check a response (exactly, by code), and — where one exists —
rewrite a text so that it satisfies the requirement. Type ids and kwargs follow IFEval's schema
(``punctuation:no_comma``, ``{"num_bullets": 3}``), so our pairs carry ``instruction_id_list`` and
``kwargs`` that IFEval's own tooling reads.

The checks reproduce IFEval's published semantics; the code is ours. Rewrites are what lets the
``programmatic`` teacher answer evolved instructions without a model: a response to I(t) is the
seed's reference answer with the rewrites of all of I(t)'s constraints applied in ``phase`` order.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

# ---------------------------------------------------------------------------------------------
# Text helpers with IFEval's definitions


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of ``\\w`` characters."""
    return len(re.findall(r"\w+", text))


def split_sentences(text: str) -> list[str]:
    """A deterministic, offline sentence splitter (no NLTK data needed)."""
    parts = re.split(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])", text.strip())
    return [p for p in (s.strip() for s in parts) if p]


_LANG_READY = False


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


def _relation_ok(actual: int, relation: str, threshold: int) -> bool:
    if relation == "less than":
        return actual < threshold
    if relation == "at least":
        return actual >= threshold
    raise ValueError(f"relation must be 'less than' or 'at least', not {relation!r}")


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


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class SampleContext:
    """What a sampler may look at: the instruction so far and the current best response to it."""

    instruction: str
    response: str
    title: str = ""


class ConstraintType:
    """One instruction type. Subclasses set the class attributes and implement ``check``."""

    id: ClassVar[str]
    #: taxonomy path: branch/sub-type, e.g. ``format/layout``
    category: ClassVar[str]
    #: where the rewrite runs when several are composed (lower first)
    phase: ClassVar[int] = 50
    #: ids of types this one is never combined with
    conflicts: ClassVar[frozenset[str]] = frozenset()
    #: checkable by code (True) or only by an LLM judge (False)
    verifiable: ClassVar[bool] = True
    #: IFEval's own type (True) or one of ecd's additions
    ifeval: ClassVar[bool] = True
    templates: ClassVar[tuple[str, ...]] = ()

    def sample(self, rng: random.Random, ctx: SampleContext) -> dict[str, Any] | None:
        """Draw kwargs for this type, or None when none fit the context."""
        return {}

    def describe(self, kwargs: dict[str, Any], rng: random.Random) -> str:
        """Phrase the requirement in natural language, choosing among a few phrasings."""
        return rng.choice(self.templates).format(**self.format_args(kwargs))

    def format_args(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return dict(kwargs)

    def check(self, response: str, kwargs: dict[str, Any]) -> bool:
        raise NotImplementedError

    def rewrite(self, text: str, kwargs: dict[str, Any]) -> str | None:
        """Return ``text`` changed so that ``check`` holds; None where this type has no rewrite."""
        return None

    @property
    def has_rewrite(self) -> bool:
        return type(self).rewrite is not ConstraintType.rewrite

    def words(self, kwargs: dict[str, Any]) -> set[str]:
        """Lowercase words this constraint puts into a response (kept clear of forbidden words)."""
        return set()


REGISTRY: dict[str, ConstraintType] = {}


def register(cls: type[ConstraintType]) -> type[ConstraintType]:
    REGISTRY[cls.id] = cls()
    return cls


def get(type_id: str) -> ConstraintType:
    try:
        return REGISTRY[type_id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(type_id, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown constraint type {type_id!r}{hint}") from None


# ---------------------------------------------------------------------------------------------
# Case and punctuation (style branch)


class _EnglishCase(ConstraintType):
    """All letters in one case, and English as langdetect sees it (IFEval's rule)."""

    category = "style/case"
    phase = 85

    @staticmethod
    def in_case(text: str) -> bool:
        raise NotImplementedError

    @staticmethod
    def to_case(text: str) -> str:
        raise NotImplementedError

    def check(self, response, kwargs):
        if not self.in_case(response):
            return False
        lang = detect_language(response)
        return lang is None or lang == "en"

    def rewrite(self, text, kwargs):
        return self.to_case(text)


@register
class EnglishLowercase(_EnglishCase):
    id = "change_case:english_lowercase"
    conflicts = frozenset({"change_case:english_capital", "detectable_format:multiple_sections"})
    in_case, to_case = staticmethod(str.islower), staticmethod(str.lower)
    templates = (
        "Your entire response should be in English, and in all lowercase letters. No capital letters are allowed.",
        "Write your whole answer in English using only lowercase letters; capital letters are not allowed.",
    )


@register
class EnglishCapital(_EnglishCase):
    id = "change_case:english_capital"
    conflicts = frozenset({"change_case:english_lowercase", "detectable_format:multiple_sections"})
    in_case, to_case = staticmethod(str.isupper), staticmethod(str.upper)
    templates = (
        "Your entire response should be in English, and in all capital letters.",
        "Respond in English, writing every letter of your answer in capitals.",
    )


@register
class NoComma(ConstraintType):
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
        return {"keyword": keyword, "frequency": have + rng.randint(1, 3), "relation": "at least"}

    def check(self, response, kwargs):
        n = len(re.findall(kwargs["keyword"], response, flags=re.IGNORECASE))
        return _relation_ok(n, kwargs["relation"], kwargs["frequency"])

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
        return {"num_placeholders": have + rng.randint(1, 3)}

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


def _chunks(text: str, n: int) -> list[str] | None:
    """Split a text into ``n`` non-empty pieces at sentence, then word, boundaries."""
    units = [u for line in text.splitlines() for u in split_sentences(re.sub(r"^\s*(?:[-*]|\d+[.)])\s+", "", line))]
    if len(units) < n:
        units = text.split()
    if len(units) < n:
        return None
    size, extra = divmod(len(units), n)
    out, i = [], 0
    for k in range(n):
        step = size + (1 if k < extra else 0)
        out.append(" ".join(units[i : i + step]).strip())
        i += step
    return out


_LAYOUT = frozenset(
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
    id = "detectable_format:number_bullet_lists"
    category = "format/layout"
    phase = 40
    conflicts = _LAYOUT - {"detectable_format:number_bullet_lists"} | {"startend:quotation"}
    templates = (
        "Your answer must contain exactly {num_bullets} bullet points. Use the markdown bullet points such as:\n* This is point 1. \n* This is point 2",
        "Format your answer as exactly {num_bullets} markdown bullet points, each starting with \"* \".",
    )

    def sample(self, rng, ctx):
        return {"num_bullets": rng.randint(2, 5)}

    @staticmethod
    def count(response: str) -> int:
        stars = re.findall(r"^\s*\*[^\*].*$", response, flags=re.MULTILINE)
        dashes = re.findall(r"^\s*-.*$", response, flags=re.MULTILINE)
        return len(stars) + len(dashes)

    def check(self, response, kwargs):
        return self.count(response) == kwargs["num_bullets"]

    def rewrite(self, text, kwargs):
        pieces = _chunks(text, kwargs["num_bullets"])
        if pieces is None:
            return None
        return "\n".join(f"* {p.lstrip('*- ')}" for p in pieces)


@register
class Paragraphs(ConstraintType):
    id = "length_constraints:number_paragraphs"
    category = "format/layout"
    phase = 40
    conflicts = _LAYOUT - {"length_constraints:number_paragraphs"}
    templates = (
        "There should be {num_paragraphs} paragraphs. Paragraphs are separated with the markdown divider: ***",
        "Write exactly {num_paragraphs} paragraphs, separated from each other by the markdown divider ***.",
    )

    def sample(self, rng, ctx):
        return {"num_paragraphs": rng.randint(2, 4)}

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
        pieces = _chunks(text, kwargs["num_paragraphs"])
        return None if pieces is None else "\n\n***\n\n".join(pieces)


@register
class Sections(ConstraintType):
    id = "detectable_format:multiple_sections"
    category = "format/layout"
    phase = 40
    conflicts = _LAYOUT - {"detectable_format:multiple_sections"} | {
        "change_case:english_lowercase",
        "change_case:english_capital",
    }
    templates = (
        "Your response must have {num_sections} sections. Mark the beginning of each section with {section_spliter} X, such as:\n{section_spliter} 1\n[content of section 1]\n{section_spliter} 2\n[content of section 2]",
        "Organise your answer in {num_sections} sections, each starting with \"{section_spliter} X\" where X is its number.",
    )

    def sample(self, rng, ctx):
        return {"section_spliter": rng.choice(("Section", "SECTION")), "num_sections": rng.randint(2, 4)}

    def check(self, response, kwargs):
        pattern = r"\s?" + kwargs["section_spliter"].strip() + r"\s?\d+\s?"
        return len(re.split(pattern, response)) - 1 >= kwargs["num_sections"]

    def rewrite(self, text, kwargs):
        pieces = _chunks(text, kwargs["num_sections"])
        if pieces is None:
            return None
        mark = kwargs["section_spliter"].strip()
        return "\n\n".join(f"{mark} {i}\n{p}" for i, p in enumerate(pieces, 1))

    def words(self, kwargs):
        return {"section"}


@register
class NthParagraphFirstWord(ConstraintType):
    id = "length_constraints:nth_paragraph_first_word"
    category = "format/layout"
    phase = 40
    conflicts = _LAYOUT - {"length_constraints:nth_paragraph_first_word"} | {"detectable_format:title"}
    templates = (
        "There should be {num_paragraphs} paragraphs. Paragraphs and only paragraphs are separated with each other by two new lines as if it was '\\n\\n' in python. Paragraph {nth_paragraph} must start with word {first_word}.",
        "Write {num_paragraphs} paragraphs separated by blank lines; paragraph {nth_paragraph} must begin with the word \"{first_word}\".",
    )

    def sample(self, rng, ctx):
        pool = content_words(ctx.instruction)
        if not pool:
            return None
        n = rng.randint(2, 3)
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
        pieces = _chunks(text, kwargs["num_paragraphs"])
        if pieces is None:
            return None
        nth = kwargs["nth_paragraph"] - 1
        pieces[nth] = f"{kwargs['first_word'].capitalize()} {pieces[nth]}"
        return "\n\n".join(p.replace("\n\n", "\n") for p in pieces)

    def words(self, kwargs):
        return {kwargs["first_word"].lower()}


@register
class HighlightedSections(ConstraintType):
    id = "detectable_format:number_highlighted_sections"
    category = "format/emphasis"
    phase = 30
    conflicts = frozenset({"detectable_format:number_bullet_lists"})
    templates = (
        "Highlight at least {num_highlights} sections in your answer with markdown, i.e. *highlighted section*.",
        "Use markdown to highlight at least {num_highlights} parts of your answer, like *this part*.",
    )

    def sample(self, rng, ctx):
        return {"num_highlights": rng.randint(1, 3)}

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
# Types used for checking (evaluation, LLM teachers); no programmatic rewrite


@register
class ResponseLanguage(ConstraintType):
    id = "language:response_language"
    category = "style/language"
    templates = ("Your ENTIRE response should be in {language} language, no other language is allowed.",)

    def check(self, response, kwargs):
        lang = detect_language(response)
        return lang is None or lang == kwargs["language"]


@register
class NumberWords(ConstraintType):
    id = "length_constraints:number_words"
    category = "format/length"
    templates = ("Answer with {relation} {num_words} words.",)

    def check(self, response, kwargs):
        return _relation_ok(count_words(response), kwargs["relation"], kwargs["num_words"])


@register
class NumberSentences(ConstraintType):
    id = "length_constraints:number_sentences"
    category = "format/length"
    templates = ("Your response should contain {relation} {num_sentences} sentences.",)

    def check(self, response, kwargs):
        return _relation_ok(len(split_sentences(response)), kwargs["relation"], kwargs["num_sentences"])


@register
class LetterFrequency(ConstraintType):
    id = "keywords:letter_frequency"
    category = "content/keywords"
    templates = ("In your response, the letter {letter} should appear {let_relation} {let_frequency} times.",)

    def check(self, response, kwargs):
        n = Counter(response.lower())[kwargs["letter"].lower()]
        return _relation_ok(n, kwargs["let_relation"], kwargs["let_frequency"])


@register
class CapitalWordFrequency(ConstraintType):
    id = "change_case:capital_word_frequency"
    category = "style/case"
    templates = ("In your response, words with all capital letters should appear {capital_relation} {capital_frequency} times.",)

    def check(self, response, kwargs):
        words = re.findall(r"\w+(?:[-']\w+)*|[^\w\s]", response)
        n = sum(1 for w in words if w.isupper())
        return _relation_ok(n, kwargs["capital_relation"], kwargs["capital_frequency"])


@register
class JsonFormat(ConstraintType):
    id = "detectable_format:json_format"
    category = "format/structure"
    templates = ("Entire output should be wrapped in JSON format. You can use markdown ticks such as ```.",)

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


@register
class ConstrainedResponse(ConstraintType):
    id = "detectable_format:constrained_response"
    category = "format/choice"
    options: ClassVar[tuple[str, ...]] = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    templates = ("Answer with one of the following options: ('My answer is yes.', 'My answer is no.', 'My answer is maybe.')",)

    def check(self, response, kwargs):
        value = response.strip()
        return any(o in value for o in self.options)


@register
class TwoResponses(ConstraintType):
    id = "combination:two_responses"
    category = "breadth/alternatives"
    templates = ("Give two different responses. Responses and only responses should be separated by 6 asterisk symbols: ******.",)

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


@register
class RepeatPrompt(ConstraintType):
    id = "combination:repeat_prompt"
    category = "breadth/repetition"
    templates = (
        "First repeat the request word for word without change, then give your answer (1. do not say any words or characters before repeating the request; 2. the request you need to repeat does not include this sentence)",
    )

    def check(self, response, kwargs):
        return response.strip().lower().startswith(kwargs["prompt_to_repeat"].strip().lower())


# ---------------------------------------------------------------------------------------------
# Checking and composing


@dataclass(frozen=True)
class Constraint:
    """A constraint instance: a type id and its kwargs, as stored in instruction records."""

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    verifiable: bool = True

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Constraint":
        return cls(id=rec["id"], kwargs=dict(rec.get("kwargs") or {}), text=rec.get("text", ""),
                   verifiable=rec.get("verifiable", True))

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "kwargs": self.kwargs, "text": self.text, "verifiable": self.verifiable}

    @property
    def type(self) -> ConstraintType:
        return get(self.id)


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants: first and/or last line dropped, and each with ``*`` removed."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    base = [response, first, last, both]
    return base[:1] + [response.replace("*", "")] + base[1:] + [v.replace("*", "") for v in base[1:]]


def check(constraint: Constraint, response: str, loose: bool = False) -> bool:
    """Whether ``response`` follows ``constraint`` (IFEval strict or loose). Empty responses fail."""
    ctype = constraint.type
    variants = loose_variants(response) if loose else [response]
    return any(v.strip() and ctype.check(v, constraint.kwargs) for v in variants)


def compatible(existing: list[Constraint], type_id: str, kwargs: dict[str, Any]) -> bool:
    """Whether a new constraint can join ``existing``: no declared conflict, no duplicate type,
    and no word that one forbids while another needs it."""
    new = get(type_id)
    for c in existing:
        if c.id == type_id or c.id in new.conflicts or type_id in c.type.conflicts:
            return False
    forbidden = {w for c in existing if c.id == ForbiddenWords.id for w in c.kwargs["forbidden_words"]}
    if forbidden & new.words(kwargs):
        return False
    if type_id == ForbiddenWords.id:
        needed = set().union(*(c.type.words(c.kwargs) for c in existing)) if existing else set()
        if needed & set(kwargs["forbidden_words"]):
            return False
    return True


def apply_rewrites(text: str, constraints: list[Constraint]) -> str | None:
    """Compose the rewrites of all constraints in phase order; None if one type has no rewrite
    or cannot apply to this text."""
    for c in sorted(constraints, key=lambda c: (c.type.phase, c.id)):
        out = c.type.rewrite(text, c.kwargs)
        if out is None:
            return None
        text = out
    return text


def rewritable_types() -> list[str]:
    """Ids of the types the programmatic teacher can both ask for and answer."""
    return sorted(t.id for t in REGISTRY.values() if t.has_rewrite)
