"""ecd's own code-checkable constraint types: requirements instruction-following users ask for
that IFEval does not cover. Ids are ``ecd:<name>``; each has a description, a sampler, an exact
check and, where one exists, a rewrite for the programmatic teacher.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ecd.constraints.base import ConstraintType, register
from ecd.constraints.ifeval import LAYOUT
from ecd.constraints.text import abbreviations, chunks, content_words, count_words, end_sentence, split_sentences

#: What the samplers draw, inclusive ranges (counts beyond the answer's are drawn as that excess)
NUM_STEPS = (2, 5)  #: ecd:numbered_steps
NUM_ROWS = (2, 4)  #: ecd:markdown_table
NUM_HEADINGS = (2, 4)  #: ecd:markdown_headings
MAX_SENTENCE_WORDS = (10, 20)  #: ecd:max_sentence_words, below the answer's longest sentence where it can be
EXTRA_BOLD = (1, 3)  #: ecd:bold_terms: beyond the answer's
#: ecd:max_characters draws between half the answer's length and one less than it (at least 40)

_ORDINALS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: everything that lays a response out in lines or blocks (IFEval's and ours)
ALL_LAYOUT = LAYOUT | {
    "ecd:numbered_steps", "ecd:markdown_table", "ecd:markdown_headings", "ecd:section_order",
}


class _Layout(ConstraintType):
    """A layout of ours: never combined with another layout, quotation marks, JSON or two answers."""

    ifeval = False
    phase = 40

    @property
    def conflicts(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset(ALL_LAYOUT - {self.id}) | {
            "startend:quotation", "detectable_format:json_format", "combination:two_responses",
            "combination:repeat_prompt", "ecd:start_with_word",
        }


@register
class NumberedSteps(_Layout):
    """An exact run of numbered steps, ``1.`` to ``n.``.

    Args:
        num_steps: the number of steps, drawn from ``NUM_STEPS``.

    Returns:
        True when the lines starting with a number and ``.`` or ``)`` are numbered 1, 2, ... ``num_steps``, in order.
    """

    id = "ecd:numbered_steps"
    category = "reasoning/steps"
    templates = (
        "Explain your answer in exactly {num_steps} numbered steps (1., 2., ...), one step per line.",
        "Structure your response as exactly {num_steps} numbered steps, each on its own line starting with its number.",
    )

    def sample(self, rng, ctx):
        return {"num_steps": rng.randint(*NUM_STEPS)}

    @staticmethod
    def steps(response: str) -> list[int]:
        return [int(m) for m in re.findall(r"^\s*(\d+)[.)]\s+\S", response, flags=re.MULTILINE)]

    def check(self, response, kwargs):
        return self.steps(response) == list(range(1, kwargs["num_steps"] + 1))

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_steps"])
        return None if pieces is None else "\n".join(f"{i}. {p}" for i, p in enumerate(pieces, 1))


@register
class MarkdownTable(_Layout):
    """A markdown table with an exact number of data rows.

    Args:
        num_rows: the number of rows under the header, drawn from ``NUM_ROWS``.

    Returns:
        True when the first table (a ``|`` header line, then a ``---`` separator) has exactly ``num_rows`` rows.
    """

    id = "ecd:markdown_table"
    category = "format/table"
    templates = (
        "Present your answer as a markdown table with exactly {num_rows} rows below the header.",
        "Include a markdown table with a header row and exactly {num_rows} data rows.",
    )

    def sample(self, rng, ctx):
        return {"num_rows": rng.randint(*NUM_ROWS)}

    @staticmethod
    def data_rows(response: str) -> int | None:
        """Data rows of the first markdown table (header, separator, rows), or None without one."""
        lines = response.splitlines()
        for i in range(len(lines) - 1):
            if lines[i].strip().startswith("|") and re.fullmatch(r"\s*\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*", lines[i + 1]):
                n = 0
                for line in lines[i + 2 :]:
                    if not line.strip().startswith("|"):
                        break
                    n += 1
                return n
        return None

    def check(self, response, kwargs):
        return self.data_rows(response) == kwargs["num_rows"]

    def rewrite(self, text, kwargs):
        pieces = chunks(text, kwargs["num_rows"])
        if pieces is None:
            return None
        rows = "\n".join(f"| {p.replace('|', '/')} |" for p in pieces)
        return f"| Point |\n| --- |\n{rows}"

    def words(self, kwargs):
        return {"point"}


@register
class MarkdownHeadings(_Layout):
    """A least number of markdown headings.

    Args:
        num_headings: the least number, drawn from ``NUM_HEADINGS``.

    Returns:
        True when at least ``num_headings`` lines are ATX headings (``#`` to ``######``).
    """

    id = "ecd:markdown_headings"
    category = "format/headings"
    templates = (
        "Use at least {num_headings} markdown headings (lines starting with #) in your answer.",
        "Organise the answer under at least {num_headings} markdown headings.",
    )

    def sample(self, rng, ctx):
        return {"num_headings": rng.randint(*NUM_HEADINGS)}

    @staticmethod
    def headings(response: str) -> list[str]:
        return re.findall(r"^\s{0,3}#{1,6}\s+(\S.*)$", response, flags=re.MULTILINE)

    def check(self, response, kwargs):
        return len(self.headings(response)) >= kwargs["num_headings"]

    def rewrite(self, text, kwargs):
        n = kwargs["num_headings"]
        pieces = chunks(text, n) if n <= len(_ORDINALS) else None
        if pieces is None:
            return None
        return "\n\n".join(f"## Part {_ORDINALS[i]}\n{p}" for i, p in enumerate(pieces))

    def words(self, kwargs):
        return {"part", *_ORDINALS}


@register
class SectionOrder(_Layout):
    """Named sections under markdown headings, in a given order.

    Args:
        sections: the heading names, one of ``orders``.

    Returns:
        True when each name is a heading (any case) and they appear in the order given.
    """

    id = "ecd:section_order"
    category = "reasoning/structure"
    orders: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("Answer", "Reasoning"),
        ("Summary", "Details", "Conclusion"),
        ("Context", "Steps", "Result"),
        ("Claim", "Evidence"),
    )
    templates = (
        "Organise your answer under the markdown headings {order} in exactly that order.",
        "Use these sections, as markdown headings, in this order: {order}.",
    )

    def format_args(self, kwargs):
        return {"order": ", ".join(f"'{s}'" for s in kwargs["sections"])}

    def sample(self, rng, ctx):
        return {"sections": list(rng.choice(self.orders))}

    def check(self, response, kwargs):
        found = [h.strip().lower() for h in MarkdownHeadings.headings(response)]
        want = [s.lower() for s in kwargs["sections"]]
        positions = []
        for name in want:
            if name not in found:
                return False
            positions.append(found.index(name))
        return positions == sorted(positions)

    def rewrite(self, text, kwargs):
        pieces = chunks(text, len(kwargs["sections"]))
        if pieces is None:
            return None
        return "\n\n".join(f"## {name}\n{p}" for name, p in zip(kwargs["sections"], pieces))

    def words(self, kwargs):
        return {s.lower() for s in kwargs["sections"]}


@register
class MaxSentenceWords(ConstraintType):
    """No sentence longer than a number of words.

    Args:
        max_words: the limit, drawn from ``MAX_SENTENCE_WORDS`` and below the answer's longest sentence.

    Returns:
        True when every sentence (NLTK's Punkt) has at most ``max_words`` words.
    """

    id = "ecd:max_sentence_words"
    category = "style/concision"
    ifeval = False
    # before the layouts, which only regroup whole sentences and add at most two words of markers
    phase = 35
    conflicts = frozenset({
        "detectable_format:title", "startend:end_checker", "detectable_format:json_format",
        "combination:repeat_prompt", "ecd:markdown_table", "ecd:no_digits",
        "change_case:english_lowercase",  # Punkt does not end a sentence before a lowercase word
    })
    templates = (
        "Keep every sentence to at most {max_words} words.",
        "No sentence in your answer may be longer than {max_words} words.",
    )

    def sample(self, rng, ctx):
        longest = max((count_words(s) for s in split_sentences(ctx.response)), default=0)
        if longest <= 10:
            return None
        return {"max_words": rng.randint(MAX_SENTENCE_WORDS[0], max(MAX_SENTENCE_WORDS[0], min(longest - 1, MAX_SENTENCE_WORDS[1])))}

    def check(self, response, kwargs):
        return all(count_words(s) <= kwargs["max_words"] for s in split_sentences(response))

    @staticmethod
    def _weak_end(token: str) -> bool:
        word = re.sub(r"\W", "", token).lower()
        return len(word) <= 2 or word in abbreviations()


    def rewrite(self, text, kwargs):
        limit = kwargs["max_words"] - 2  # slack for a layout marker such as "1." or "## Summary"
        out_lines = []
        for line in text.split("\n"):
            pieces: list[str] = []
            for sentence in split_sentences(line):
                current: list[str] = []
                n = 0
                for token in sentence.split():
                    k = count_words(token)
                    if current and n + k > limit:
                        carry: list[str] = []
                        # Punkt reads "a." or "dr." as an initial or abbreviation, not a sentence end
                        while len(current) > 1 and self._weak_end(current[-1]):
                            carry.insert(0, current.pop())
                        pieces.append(end_sentence(" ".join(current)))
                        current, n = carry, sum(count_words(t) for t in carry)
                        if not current:
                            token = token[:1].upper() + token[1:]  # Punkt only ends a sentence before a capital
                        else:
                            current[0] = current[0][:1].upper() + current[0][1:]
                    current.append(token)
                    n += k
                if current:
                    pieces.append(end_sentence(" ".join(current)))
            out_lines.append(" ".join(pieces))
        out = "\n".join(out_lines)
        return out if self.check(out, kwargs) else None


@register
class StartWithWord(ConstraintType):
    """The answer's first word.

    Args:
        word: the word, drawn from the instruction's content words the answer does not start with.

    Returns:
        True when the first run of word characters, after any leading marks, is ``word`` (any case).
    """

    id = "ecd:start_with_word"
    category = "format/opening"
    ifeval = False
    phase = 56
    conflicts = frozenset(ALL_LAYOUT | {"detectable_format:title", "combination:repeat_prompt",
                                        "detectable_format:json_format"})
    templates = (
        "Start your response with the word \"{word}\".",
        "The first word of your answer must be \"{word}\".",
    )

    def sample(self, rng, ctx):
        pool = [w for w in content_words(ctx.instruction) if not ctx.response.lower().lstrip("\"'*# ").startswith(w)]
        return {"word": rng.choice(pool)} if pool else None

    def check(self, response, kwargs):
        m = re.match(r"[^\w]*(\w+)", response)
        return m is not None and m.group(1).lower() == kwargs["word"].lower()

    def rewrite(self, text, kwargs):
        return f"{kwargs['word'].capitalize()} {text.lstrip()}"

    def words(self, kwargs):
        return {kwargs["word"].lower()}


@register
class EndWithQuestion(ConstraintType):
    """The answer closes with a question.

    Returns:
        True when the answer, stripped of whitespace and outer ``"``, ends with ``?``.
    """

    id = "ecd:end_with_question"
    category = "style/ending"
    ifeval = False
    phase = 58
    conflicts = frozenset({"detectable_format:json_format"})
    templates = (
        "End your response with a question to the reader.",
        "Finish your answer with a question mark: close with a question.",
    )

    def check(self, response, kwargs):
        return response.strip().strip('"').rstrip().endswith("?")

    def rewrite(self, text, kwargs):
        return f"{text.rstrip()}\nDoes this answer your question?"

    def words(self, kwargs):
        return {"does", "this", "answer", "your", "question"}


@register
class NoDigits(ConstraintType):
    """Numbers in words, never in digits.

    Returns:
        True when the answer holds no character 0-9.
    """

    id = "ecd:no_digits"
    category = "style/numbers"
    ifeval = False
    phase = 84
    conflicts = frozenset({"ecd:numbered_steps", "detectable_format:multiple_sections"})
    templates = (
        "Do not use any digits; write all numbers out in words.",
        "Your answer must not contain the characters 0-9: spell numbers out.",
    )

    def check(self, response, kwargs):
        return not re.search(r"[0-9]", response)

    def rewrite(self, text, kwargs):
        return re.sub(r"[0-9]+", lambda m: " ".join(_DIGIT_WORDS[int(d)] for d in m.group()), text)


@register
class BoldTerms(ConstraintType):
    """A least number of terms in bold.

    Args:
        num_bold: the least number, drawn as the answer's count plus ``EXTRA_BOLD``.

    Returns:
        True when the non-blank ``**...**`` spans on one line number at least ``num_bold``.
    """

    id = "ecd:bold_terms"
    category = "format/emphasis"
    ifeval = False
    phase = 31
    templates = (
        "Put at least {num_bold} key terms in **bold**.",
        "Mark at least {num_bold} important words or phrases in bold with double asterisks.",
    )

    def sample(self, rng, ctx):
        return {"num_bold": self.count(ctx.response) + rng.randint(*EXTRA_BOLD)}

    @staticmethod
    def count(response: str) -> int:
        return sum(1 for b in re.findall(r"\*\*([^\n*]+)\*\*", response) if b.strip())

    def check(self, response, kwargs):
        return self.count(response) >= kwargs["num_bold"]

    def rewrite(self, text, kwargs):
        need = kwargs["num_bold"] - self.count(text)
        out = text
        for w in dict.fromkeys(re.findall(r"\b[A-Za-z]{4,}\b", text)):
            if need <= 0:
                break
            out, k = re.subn(r"(?<![\w*])" + re.escape(w) + r"(?![\w*])", f"**{w}**", out, count=1)
            need -= k
        if need > 0:  # a text with too few words to bold
            out += "\n" + " ".join(["**key point**"] * need)
        return out

    def words(self, kwargs):
        return {"key", "point"}


@register
class NoExclamation(ConstraintType):
    """No exclamation mark anywhere.

    Returns:
        True when the answer holds no ``!``.
    """

    id = "ecd:no_exclamation"
    category = "style/punctuation"
    ifeval = False
    phase = 81
    templates = ("Do not use any exclamation marks.", "Your answer must not contain a single exclamation mark.")

    def check(self, response, kwargs):
        return "!" not in response

    def rewrite(self, text, kwargs):
        return text.replace("!", ".")


@register
class MaxCharacters(ConstraintType):
    """A length limit in characters.

    Args:
        max_chars: the limit, drawn between half the answer's length and one less (at least 40).

    Returns:
        True when the stripped answer has at most ``max_chars`` characters.
    """

    id = "ecd:max_characters"
    category = "format/length"
    ifeval = False
    templates = (
        "Keep your whole answer under {max_chars} characters.",
        "Your response must be at most {max_chars} characters long.",
    )

    def sample(self, rng, ctx):
        n = len(ctx.response.strip())
        return {"max_chars": max(40, rng.randint(n // 2, max(n // 2, n - 1)))} if n > 80 else None

    def check(self, response, kwargs: dict[str, Any]):
        return len(response.strip()) <= kwargs["max_chars"]
