"""IFBench's 58 out-of-distribution constraint types (Pyatkin et al., 2025), checked by code.

The benchmark tests whether instruction following generalises beyond IFEval's own types: counting,
ratios, word and sentence games, formats, copying and a few one-off tasks, attached to held-out
WildChat prompts. The ids and kwargs are IFBench's; the code is ours, written from the benchmark's
descriptions, and its verdicts are measured against the reference implementation's on the public
sample responses (``tests/test_ifbench.py``; every difference is explained in docs/constraints.md).
Where the reference has a quirk that decides verdicts (words split on whitespace with their
punctuation kept, sentences split by IFEval's rules, an exception that fails the check), we follow
it: a checker that disagrees with the benchmark would measure something else.

Every type here is **evaluation-only**: evolution never draws one unless
``evolve.allow_held_out_types`` is set, so that IFBench stays an out-of-distribution test.
"""

from __future__ import annotations

import csv
import io
import re
import string
import unicodedata
from collections import Counter
from typing import Any, ClassVar

from ecd.constraints.base import ConstraintType, register
from ecd.constraints.text import count_words, english_stopwords, nltk_word_tokenize, rule_sentences

#: What the samplers draw, inclusive ranges. IFBench's types are drawn only by an ablation that lets
#: evolution add them (``evolve.allow_held_out_types``); a type with numeric kwargs names its ranges
#: in ``ranges`` beside its id, the word-count range here.
WORD_COUNT_LOW = (100, 500)  #: count:word_count_range: min_words
#: count:word_count_range: max_words less min_words, drawn between min_words // 20 and min_words // 10
WORD_COUNT_SPAN_DIVISORS = (20, 10)

PUNCT = string.punctuation
_NO_PUNCT = str.maketrans("", "", PUNCT)


def no_punct(text: str) -> str:
    """The text with every ASCII punctuation character removed."""
    return text.translate(_NO_PUNCT)


def bare(word: str) -> str:
    """A whitespace-split word without its leading and trailing punctuation."""
    return word.strip(PUNCT + " ")


class IFBenchType(ConstraintType):
    """A type of IFBench: evaluation-only, grouped by its id's prefix (count, ratio, words,
    sentence, format, custom, repeat). ``follows`` is the check; an answer that makes it fail to
    apply (no sentence, no word where one is needed) does not follow the instruction."""

    ifeval = False
    held_out = True
    templates: ClassVar[tuple[str, ...]] = ()

    @property
    def category(self) -> str:  # type: ignore[override]
        return f"ifbench/{self.id.split(':')[0]}"

    @property
    def group(self) -> str:
        return self.id.split(":")[0]

    def sample(self, rng, ctx):
        return None  # drawn only by an ablation that allows held-out types and defines samplers

    def check(self, response: str, kwargs: dict[str, Any]) -> bool:
        try:
            return bool(self.follows(response, kwargs))
        except (IndexError, ZeroDivisionError, ValueError):
            return False

    def follows(self, response: str, kwargs: dict[str, Any]) -> bool:
        raise NotImplementedError


class _Fixed(IFBenchType):
    """A type without kwargs: its one phrasing is the requirement."""

    def sample(self, rng, ctx):
        return {}

    def describe(self, kwargs, rng):
        return self.templates[0]


class _Counted(IFBenchType):
    """A type with numeric kwargs drawn from a range (for an ablation that lets evolution add it)."""

    ranges: ClassVar[dict[str, tuple[int, int]]] = {}

    def sample(self, rng, ctx):
        return {k: rng.randint(lo, hi) for k, (lo, hi) in self.ranges.items()}


# ---------------------------------------------------------------------------------------------
# count


@register
class WordCountRange(_Counted):
    """A word count within a range.

    Args:
        min_words: the least count, drawn from ``WORD_COUNT_LOW``.
        max_words: the most, drawn as ``min_words`` plus a share of it (``WORD_COUNT_SPAN_DIVISORS``).

    Returns:
        True when the word count (IFEval's tokenizer) lies in ``[min_words, max_words]``.
    """

    id = "count:word_count_range"
    templates = ("The response must contain between {min_words} and {max_words} words.",)

    def sample(self, rng, ctx):
        low = rng.randint(*WORD_COUNT_LOW)
        wide, narrow = WORD_COUNT_SPAN_DIVISORS
        return {"min_words": low, "max_words": low + rng.randint(low // wide, low // narrow)}

    def follows(self, response, kwargs):
        return kwargs["min_words"] <= count_words(response) <= kwargs["max_words"]


@register
class UniqueWordCount(_Counted):
    """A least number of different words.

    Args:
        N: the least number.

    Returns:
        True when the lowercased whitespace-split words, bare of outer punctuation, hold ``N`` distinct ones.
    """

    id = "count:unique_word_count"
    templates = ("Use at least {N} unique words in the response.",)
    ranges = {"N": (100, 500)}

    def follows(self, response, kwargs):
        return len({bare(w) for w in response.lower().split()}) >= kwargs["N"]


@register
class Conjunctions(_Counted):
    """A least number of different coordinating conjunctions.

    Args:
        small_n: the least number.

    Returns:
        True when the words that are a conjunction (and, but, for, nor, or, so, yet) number ``small_n``
        distinct spellings, punctuation included (``and`` and ``and,`` are two, as in the reference).
    """

    id = "count:conjunctions"
    templates = ("Use at least {small_n} different coordinating conjunctions in the response.",)
    ranges = {"small_n": (2, 6)}
    CONJUNCTIONS = frozenset({"and", "but", "for", "nor", "or", "so", "yet"})

    def follows(self, response, kwargs):
        # distinct as written: "and" and "and," count as two, as in the reference
        used = {w for w in response.split() if bare(w).lower() in self.CONJUNCTIONS}
        return len(used) >= kwargs["small_n"]


@register
class PersonNames(_Counted):
    """A least number of names from a fixed list of 50.

    Args:
        N: the least number.

    Returns:
        True when at least ``N`` of ``NAMES`` occur in the answer, as substrings.
    """

    id = "count:person_names"
    NAMES = ("Emma", "Liam", "Sophia", "Jackson", "Olivia", "Noah", "Ava", "Lucas", "Isabella", "Mason", "Mia",
             "Ethan", "Charlotte", "Alexander", "Amelia", "Benjamin", "Harper", "Leo", "Zoe", "Daniel", "Chloe",
             "Samuel", "Lily", "Matthew", "Grace", "Owen", "Abigail", "Gabriel", "Ella", "Jacob", "Scarlett",
             "Nathan", "Victoria", "Elijah", "Layla", "Nicholas", "Audrey", "David", "Hannah", "Christopher",
             "Penelope", "Thomas", "Nora", "Andrew", "Aria", "Joseph", "Claire", "Ryan", "Stella", "Jonathan")
    templates = ("Mention at least {N} different person names in the response, from this list of person names: "
                 + ", ".join(NAMES) + ".",)
    ranges = {"N": (1, 50)}

    def follows(self, response, kwargs):
        return sum(name in response for name in self.NAMES) >= kwargs["N"]  # as substrings, as the reference


@register
class Numbers(_Counted):
    """An exact count of numbers.

    Args:
        N: the count.

    Returns:
        True when the answer, punctuation removed, holds exactly ``N`` runs of digits.
    """

    id = "count:numbers"
    templates = ("Include exactly {N} numbers in the response.",)
    ranges = {"N": (1, 6)}

    def follows(self, response, kwargs):
        return len(re.findall(r"\d+", no_punct(response))) == kwargs["N"]


@register
class Punctuation(_Fixed):
    """Every standard punctuation mark, the interrobang included.

    Returns:
        True when the answer holds ``?!``, ``!?`` or ``‽`` and, one ``?!``/``!?`` aside, each of ``. , ! ? ; :``.
    """

    id = "count:punctuation"
    templates = ("Use every standard punctuation mark at least once, including semicolons, colons, and the "
                 "interrobang (?!).",)

    def follows(self, response, kwargs):
        if not ("!?" in response or "?!" in response or "\u203d" in response):
            return False
        rest = response.replace("?!", "", 1)
        if rest == response:
            rest = response.replace("!?", "", 1)
        return set(".,!?;:") <= set(rest)


@register
class Pronouns(_Counted):
    """A least number of English personal pronouns.

    Args:
        N: the least number.

    Returns:
        True when the lowercased words (``/`` a space, punctuation removed) include ``N`` of ``PRONOUNS``.
    """

    id = "count:pronouns"
    templates = ("The response should include at least {N} pronouns.",)
    ranges = {"N": (1, 25)}
    PRONOUNS = frozenset("i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his "
                         "himself she her hers herself it its itself they them their theirs themselves".split())

    def follows(self, response, kwargs):
        words = no_punct(response.replace("/", " ").lower()).split()
        return sum(w in self.PRONOUNS for w in words) >= kwargs["N"]


@register
class KeywordsMultiple(IFBenchType):
    """Five keywords, each an exact number of times (1, 2, 3, 5 and 7).

    Args:
        keyword1: the keyword used once; ``keyword2`` to ``keyword5`` likewise, used ``TIMES`` times.

    Returns:
        True when each keyword occurs exactly its number of times in the lowercased answer, as a substring.
    """

    id = "count:keywords_multiple"
    templates = ("Include keyword {keyword1} once in your response, keyword {keyword2} twice in your response, "
                 "keyword {keyword3} three times in your response, keyword {keyword4} five times in your response, "
                 "and keyword {keyword5} seven times in your response.",)
    TIMES = (1, 2, 3, 5, 7)

    def follows(self, response, kwargs):
        text = response.lower()
        return all(text.count(str(kwargs[f"keyword{i}"]).strip().lower()) == n for i, n in enumerate(self.TIMES, 1))


@register
class WordsJapanese(_Counted):
    """Every Nth word in Japanese.

    Args:
        N: the period.

    Returns:
        True when each ``N``-th whitespace word, bare of punctuation, is empty, a number or holds a kana or kanji.
    """

    id = "count:words_japanese"
    templates = ("Every {N}th word of your response must be in Japanese.",)
    ranges = {"N": (2, 30)}
    JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

    def follows(self, response, kwargs):
        n = kwargs["N"]
        for i, word in enumerate(response.split(), 1):
            w = bare(word)
            if i % n == 0 and w and not w.isdigit() and not self.JAPANESE.search(w):
                return False
        return True


# ---------------------------------------------------------------------------------------------
# ratio


@register
class StopWords(_Counted):
    r"""A most share of English stop words.

    Args:
        percentage: the most share, in percent.

    Returns:
        True when NLTK's English stop words among the ``\w+`` tokens are at most ``percentage`` % of the word count.
    """

    id = "ratio:stop_words"
    templates = ("Ensure that stop words constitute no more than {percentage}% of the total words in your response.",)
    ranges = {"percentage": (1, 100)}

    def follows(self, response, kwargs):
        stop = english_stopwords()
        tokens = re.findall(r"\w+", response)
        return sum(t.lower() in stop for t in tokens) / count_words(response) * 100 <= kwargs["percentage"]


def _ending(sentences: list[str], mark: str) -> int:
    return sum(s.endswith(mark) for s in sentences)


@register
class SentenceType(_Fixed):
    """Twice as many declarative sentences as questions.

    Returns:
        True when the sentences ending in ``.`` are twice those ending in ``?`` (IFEval's splitter).
    """

    id = "ratio:sentence_type"
    templates = ("Maintain a 2:1 ratio of declarative to interrogative sentences.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        return _ending(s, ".") == 2 * _ending(s, "?")


@register
class SentenceBalance(_Fixed):
    """As many statements as questions as exclamations.

    Returns:
        True when the sentences ending in ``.``, ``?`` and ``!`` are equal in number.
    """

    id = "ratio:sentence_balance"
    templates = ("Ensure that the ratio of sentence types (declarative, interrogative, exclamatory) is balanced.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        return _ending(s, ".") == _ending(s, "?") == _ending(s, "!")


@register
class SentenceWords(_Fixed):
    """Three sentences of the same length.

    Returns:
        True when there are three sentences with the same number of characters (the words are not
        compared, as in the reference).
    """

    id = "ratio:sentence_words"
    templates = ("Respond with three sentences, all containing the same number of characters but using all "
                 "different words.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        return len(s) == 3 and len({len(x.strip()) for x in s}) == 1  # the reference checks the characters only


@register
class Overlap(IFBenchType):
    """A share of character trigrams in common with a reference text.

    Args:
        percentage: the target share, in percent (within 2 points either way).
        reference_text: the text compared with.

    Returns:
        True when the answer's distinct character trigrams found in the reference are ``percentage`` ± 2 %.
    """

    id = "ratio:overlap"
    templates = ("Maintain a trigram overlap of {percentage}% (±2%) with the provided reference text.",)

    @staticmethod
    def trigrams(text: str) -> set[str]:
        return {text[i:i + 3] for i in range(len(text) - 2)}  # of characters, as the reference

    def follows(self, response, kwargs):
        ours = self.trigrams(response)
        share = len(ours & self.trigrams(str(kwargs["reference_text"]))) / len(ours) * 100
        return kwargs["percentage"] - 2 <= share <= kwargs["percentage"] + 2


# ---------------------------------------------------------------------------------------------
# words


@register
class Alphabet(_Fixed):
    """Each word starting with the next letter of the alphabet, Z looping to A.

    Returns:
        True when the first word starts with a letter and each next word, bare of punctuation, with the next one.
    """

    id = "words:alphabet"
    templates = ("Each word must start with the next letter of the alphabet, looping back to 'A' after 'Z'.",)

    def follows(self, response, kwargs):
        words = no_punct(response).strip(PUNCT + " ").split()
        letter = words[0][0].lower()
        if letter not in string.ascii_lowercase:
            return False
        for word in words[1:]:
            w = bare(word).lower()
            if not w:
                continue
            letter = string.ascii_lowercase[(string.ascii_lowercase.index(letter) + 1) % 26]
            if w[0] != letter:
                return False
        return True


@register
class Vowel(_Fixed):
    """One paragraph using no more than three different vowels.

    Returns:
        True when the answer is one line and holds at most three of a, e, i, o, u (any case).
    """

    id = "words:vowel"
    templates = ("Write a paragraph using words that contain only three types of vowels.",)

    def follows(self, response, kwargs):
        lines = response.strip().split("\n")
        return len(lines) == 1 and len(set(lines[0].lower()) & set("aeiou")) <= 3


@register
class Consonants(_Fixed):
    """A consonant cluster in every word.

    Returns:
        True when each lowercased whitespace word holds two consonants in a row.
    """

    id = "words:consonants"
    templates = ("Ensure each word in your response has at least one consonant cluster (two or more consonants "
                 "together).",)
    CLUSTER = re.compile(r"[bcdfghjklmnpqrstvwxyz]{2}")

    def follows(self, response, kwargs):
        return all(self.CLUSTER.search(w) for w in response.lower().split())


@register
class Palindrome(_Fixed):
    """At least ten palindromes of five letters or more.

    Returns:
        True when ten or more words, punctuation removed and lowercased, read the same backwards.
    """

    id = "words:palindrome"
    templates = ("Include at least 10 single-word palindromes, each at least 5 characters long.",)

    def follows(self, response, kwargs):
        return sum(len(w) >= 5 and w == w[::-1] for w in no_punct(response).lower().split()) >= 10


@register
class PrimeLengths(_Fixed):
    """Only words whose length is a prime number.

    Returns:
        True when every word, punctuation removed, has a length in ``PRIMES``.
    """

    id = "words:prime_lengths"
    templates = ("Use only words with lengths that are prime numbers.",)
    PRIMES = frozenset({2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97})

    def follows(self, response, kwargs):
        return all(len(w) in self.PRIMES for w in no_punct(response).split())


@register
class StartVerb(_Fixed):
    """The answer opens with a verb.

    Returns:
        True when NLTK's tagger tags the first token as a verb (needs the tagger; scored apart without it).
    """

    id = "words:start_verb"
    templates = ("The response must start with a verb.",)
    #: needs NLTK's averaged perceptron tagger, which cannot be had offline: scored apart (docs/constraints.md)
    resource = "taggers/averaged_perceptron_tagger_eng"

    def follows(self, response, kwargs):
        from ecd.constraints.text import pos_tags

        tokens = nltk_word_tokenize(response)
        return bool(tokens) and "VB" in pos_tags(tokens)[0][1]


@register
class Repeats(_Counted):
    """No word repeated more than a number of times.

    Args:
        small_n: the most times any word may occur.

    Returns:
        True when no lowercased word, punctuation removed, occurs more than ``small_n`` times.
    """

    id = "words:repeats"
    templates = ("The response should not repeat any word more than {small_n} times.",)
    ranges = {"small_n": (1, 5)}

    def follows(self, response, kwargs):
        counts = Counter(no_punct(response.lower()).split())
        return all(n <= kwargs["small_n"] for n in counts.values())


@register
class OddEvenSyllables(_Fixed):
    """Words alternating between odd and even syllable counts.

    Returns:
        True when neighbouring words' syllable counts (syllapy) differ in parity.
    """

    id = "words:odd_even_syllables"
    templates = ("Alternate between words with odd and even numbers of syllables.",)

    def follows(self, response, kwargs):
        import syllapy

        parity = [syllapy.count(w) % 2 for w in no_punct(response).lower().split() if w.strip()]
        return all(a != b for a, b in zip(parity, parity[1:]))


@register
class LastFirst(_Fixed):
    """Each sentence's last word is the next one's first.

    Returns:
        True when for every two neighbouring sentences the last word of the one is the first of the other (any case).
    """

    id = "words:last_first"
    templates = ("The last word of each sentence must become the first word of the next sentence.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        for this, nxt in zip(s, s[1:]):
            if this.rstrip(PUNCT + " ").split()[-1].lower() != nxt.lstrip(PUNCT + " ").split()[0].lower():
                return False
        return True


@register
class ParagraphLastFirst(_Fixed):
    """Each paragraph (line) ends with the word it starts with.

    Returns:
        True when every non-empty line's first and last words, lowercased, are the same (inner punctuation kept).
    """

    id = "words:paragraph_last_first"
    templates = ("Each paragraph must end with the same word it started with, separate paragraphs with a newline.",)

    def follows(self, response, kwargs):
        for line in response.split("\n"):
            words = line.strip().lower().strip(PUNCT + " ").split()  # inner punctuation stays, as the reference
            if words and words[0] != words[-1]:
                return False
        return True


@register
class NoConsecutive(_Fixed):
    """No two neighbouring words with the same first letter.

    Returns:
        True when the lowercased words, punctuation removed, never share a first letter with the next.
    """

    id = "words:no_consecutive"
    templates = ("No two consecutive words can share the same first letter.",)

    def follows(self, response, kwargs):
        words = no_punct(response.lower()).split()
        return all(a[0] != b[0] for a, b in zip(words, words[1:]))


@register
class KeywordSpecificPosition(IFBenchType):
    """A keyword at a given word of a given sentence.

    Args:
        keyword: the word.
        n: the sentence, from 1.
        m: the word within it, from 1 (NLTK's tokens).

    Returns:
        True when sentence ``n`` has at least ``m`` tokens and token ``m`` is ``keyword``, exactly.
    """

    id = "words:keywords_specific_position"
    templates = ("Include keyword {keyword} in the {n}-th sentence, as the {m}-th word of that sentence.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        n, m = kwargs["n"], kwargs["m"]
        if len(s) < n:
            return False
        words = nltk_word_tokenize(s[n - 1])
        return len(words) >= m and words[m - 1] == str(kwargs["keyword"]).strip()


@register
class WordsPosition(IFBenchType):
    """A keyword as the second word and the second to last.

    Args:
        keyword: the word.

    Returns:
        True when NLTK's second token and second to last are both ``keyword``, exactly.
    """

    id = "words:words_position"
    templates = ("The second word in your response and the second to last word in your response should be the "
                 "word {keyword}.",)

    def follows(self, response, kwargs):
        words = nltk_word_tokenize(response)
        return len(words) >= 2 and words[1] == words[-2] == str(kwargs["keyword"]).strip()


# ---------------------------------------------------------------------------------------------
# sentence


@register
class AlliterationIncrement(_Fixed):
    """Longer runs of alliteration sentence after sentence.

    Returns:
        True when each sentence's alliteration score (2 for a pair of words with the same first letter,
        1 for each word extending it) is above the previous sentence's.
    """

    id = "sentence:alliteration_increment"
    templates = ("Each sentence must have a longer sequence of consecutive alliterative words than the previous one.",)

    def follows(self, response, kwargs):
        previous = -1
        for sentence in rule_sentences(response):
            words = [w.lstrip(PUNCT + " ") for w in sentence.lower().split()]
            words = [w for w in words if w]
            score, run = 0, False
            for a, b in zip(words, words[1:]):
                if a[0] == b[0]:
                    score += 1 if run else 2
                    run = True
                else:
                    run = False
            if score <= previous:
                return False
            previous = score
        return True


@register
class Increment(_Counted):
    """Each sentence a fixed number of words longer than the one before.

    Args:
        small_n: the step.

    Returns:
        True when there is a sentence and each one has exactly ``small_n`` more words than the previous.
    """

    id = "sentence:increment"
    templates = ("Each sentence must contain exactly {small_n} more words than the previous one.",)
    ranges = {"small_n": (1, 5)}

    def follows(self, response, kwargs):
        counts = [len(no_punct(s).split()) for s in rule_sentences(response)]
        if not counts:
            raise IndexError("no sentence")
        return all(b == a + kwargs["small_n"] for a, b in zip(counts, counts[1:]))


@register
class SentenceKeyword(IFBenchType):
    """A keyword in a given sentence.

    Args:
        word: the keyword.
        N: the sentence, from 1 (a float in some of IFBench's records).

    Returns:
        True when sentence ``N`` exists and holds ``word`` as a substring, any case.
    """

    id = "sentence:keyword"
    templates = ('The response must include keyword "{word}" in the {N}-th sentence.',)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        n = kwargs["N"]  # a float in some of IFBench's records, as int() in the reference takes it
        return len(s) >= n and str(kwargs["word"]).lower() in s[int(n - 1)].lower()


# ---------------------------------------------------------------------------------------------
# format


@register
class Parentheses(_Fixed):
    """Brackets nested five levels deep.

    Returns:
        True when a correct closer comes after the nesting reached depth 5 (a wrong closer starts the scan over).
    """

    id = "format:parentheses"
    templates = ("Nest parentheses (and [brackets {and braces}]) at least 5 levels deep.",)
    PAIRS = {")": "(", "]": "[", "}": "{"}

    def follows(self, response, kwargs):
        # the reference's scan: a mismatched closer starts over; the first correct closer after
        # reaching depth 5 succeeds
        stack: list[str] = []
        deepest = 0
        for ch in response:
            if ch in "([{":
                stack.append(ch)
                deepest = max(deepest, len(stack))
            elif ch in self.PAIRS:
                if stack and stack[-1] == self.PAIRS[ch]:
                    stack.pop()
                    if deepest >= 5:
                        return True
                else:
                    stack, deepest = [], 0
        return False


@register
class Quotes(_Fixed):
    """Quotation marks nested three levels deep.

    Returns:
        True when, closing each ``"`` or ``'`` with its own kind, the answer climbs down three levels from its deepest.
    """

    id = "format:quotes"
    templates = ("Include quotes within quotes within quotes, at least 3 levels deep, alternating between double "
                 "quotes and single quotes.",)

    def follows(self, response, kwargs):
        stack: list[str] = []
        reached = depth = 0
        for ch in response:
            if stack and ch == stack[-1]:
                stack.pop()
                depth -= 1
                if reached - depth >= 3:
                    return True
            elif ch in "\"'":
                stack.append(ch)
                depth += 1
                reached = max(reached, depth)
        return False


@register
class Options(IFBenchType):
    """One of the given options, nothing else.

    Args:
        options: the options as IFBench writes them, separated by ``/``, ``or`` or ``,``.

    Returns:
        True when the answer is one option: exactly, for lettered options; bare of punctuation and any
        case, otherwise.
    """

    id = "format:options"
    templates = ("Answer with one of the following options: {options}. Do not give any explanation.",)

    @staticmethod
    def parse(options: str) -> tuple[list[str], bool]:
        """The options and whether they are letters (then matched exactly)."""
        letters = re.match(r"\W*[aA]\W*[bB]\W*[cC]\W*", options) is not None
        sep = "/" if "/" in options else "or" if "or" in options else ","
        return [o.strip() for o in options.split(sep)], letters

    def follows(self, response, kwargs):
        options, letters = self.parse(str(kwargs["options"]))
        if letters:
            return response in options
        answer = bare(response).lower()
        return any(bare(o).lower() == answer for o in options)


@register
class Newline(_Fixed):
    """Each word on a line of its own.

    Returns:
        True when the answer, punctuation removed, has as many non-empty lines as words.
    """

    id = "format:newline"
    templates = ("Write each word on a new line.",)

    def follows(self, response, kwargs):
        text = no_punct(response).strip()
        lines = [line for line in text.split("\n") if line != ""]
        return len(lines) == len(text.split())


@register
class Emoji(_Fixed):
    """An emoji at the end of every sentence.

    Returns:
        True when each sentence ends (last or second to last character, punctuation removed) with an
        emoji, or the next sentence starts with one.
    """

    id = "format:emoji"
    templates = ("Please use an emoji at the end of every sentence.",)

    def follows(self, response, kwargs):
        import emoji

        sentences = rule_sentences(response)
        for i, sentence in enumerate(sentences):
            text = no_punct(sentence).strip()
            last = text[-1]  # a sentence of punctuation alone: IndexError, not followed (the reference raises)
            second = text[-2] if len(text) > 1 else last
            if emoji.is_emoji(last) or emoji.is_emoji(second):
                continue
            if i == len(sentences) - 1:
                return False
            following = no_punct(sentences[i + 1]).strip()
            if not following or not emoji.is_emoji(following[0]):
                return False
        return True


@register
class LineIndent(_Fixed):
    """Stairs: each line indented further than the one before.

    Returns:
        True when the leading spaces grow from line to line, blank lines dropped as the reference drops them.
    """

    id = "format:line_indent"
    templates = ("Create stairs by incrementally indenting each new line.",)

    def follows(self, response, kwargs):
        lines = response.split("\n")
        # the reference removes blank lines while iterating over the same list, which skips the
        # line after each removed one; its verdicts depend on that, so it is reproduced
        i = 0
        while i < len(lines):
            if not lines[i].strip():
                lines.remove(lines[i])
            i += 1
        indents = [len(line) - len(line.lstrip(" ")) for line in lines]
        return all(b > a for a, b in zip(indents, indents[1:]))


@register
class QuoteUnquote(_Fixed):
    """Every quoted phrase followed by an unquoted explanation.

    Returns:
        True when, whitespace removed, no two quotes touch and the answer does not end on a quote.
    """

    id = "format:quote_unquote"
    templates = ("Every quoted phrase must be followed by an unquoted explanation.",)

    def follows(self, response, kwargs):
        text = response.replace("\u201c", '"').replace("\u201d", '"').replace("'\"'", "")
        text = "".join(text.split())
        if '""' in text:
            return False
        return text.strip(string.digits + PUNCT.replace('"', ""))[-1] != '"'


@register
class SpecialList(IFBenchType):
    """A list with a given separator instead of bullets.

    Args:
        sep: the separator.

    Returns:
        True when ``sep`` occurs at least twice.
    """

    id = "format:list"
    templates = ("Answer with a list of items, instead of bullet points use {sep}.",)

    def follows(self, response, kwargs):
        return response.count(str(kwargs["sep"])) >= 2


@register
class Thesis(_Fixed):
    """A thesis statement in HTML italics.

    Returns:
        True when an ``<i>`` (or ``<em>``) span has text and text follows its closing tag.
    """

    id = "format:thesis"
    templates = ("Each section must begin with a thesis statement in italics, use HTML to indicate the italics.",)

    def follows(self, response, kwargs):
        start = response.find("<i>")
        if start == -1:
            start = response.find("<em>")
            if start == -1:
                return False
        text = response[start:]
        end = text.find("</i>")
        if end == -1:
            end = text.find("</em>")
            if end == -1:
                return False
        # the reference's offsets (3 after the opening tag, 4 after the closing one) whatever the tag
        return text[3:end].strip() != "" and text[end + 4:].strip() != ""


@register
class SubBullets(_Fixed):
    """Bullets with at least one sub-bullet each.

    Returns:
        True when every piece after a ``*`` holds a ``-``.
    """

    id = "format:sub-bullets"
    templates = ("Your response must include bullet points denoted by * and at least one sub-bullet point denoted "
                 "by - for each bullet point.",)

    def follows(self, response, kwargs):
        return all("-" in piece for piece in response.split("*")[1:])


@register
class NoBulletsBullets(_Fixed):
    """Two sentences or more, then two bullet points or more.

    Returns:
        True when prose lines of at least two sentences come first and only ``*`` lines, two or more, after.
    """

    id = "format:no_bullets_bullets"
    templates = ("Your answer must contain at least two sentences ending in a period followed by at least two "
                 "bullet points denoted by *.",)

    def follows(self, response, kwargs):
        prose: Any = True  # the reference reuses this flag for the last line's sentences (see docs)
        sentences = bullets = 0
        for line in response.split("\n"):
            if line.strip().startswith("*"):
                prose = False
                if sentences < 2:
                    return False
                bullets += 1
            elif prose:
                prose = rule_sentences(line.strip())
                sentences += len(prose)
            else:
                return False
        return bullets >= 2


@register
class TitleCase(_Fixed):
    """The whole answer in title case.

    Returns:
        True when no NLTK token starts lowercase with the rest of it in one case.
    """

    id = "format:title_case"
    templates = ("Write the entire response in title case (capitalize the first letter of every major word).",)

    def follows(self, response, kwargs):
        for word in nltk_word_tokenize(response):
            head, tail = word[0], word[1:]
            if head.isupper() and tail.islower():
                continue
            if head.islower() and (tail.isupper() or tail.islower()):
                return False
        return True


@register
class OutputTemplate(_Fixed):
    """A fixed template: ``My Answer:``, ``My Conclusion:``, ``Future Outlook:``.

    Returns:
        True when the answer holds the three labels.
    """

    id = "format:output_template"
    templates = ("Use this exact template for your response: My Answer: [answer] My Conclusion: [conclusion] "
                 "Future Outlook: [outlook]",)

    def follows(self, response, kwargs):
        return all(part in response for part in ("My Answer:", "My Conclusion:", "Future Outlook:"))


@register
class NoWhitespace(_Fixed):
    """No whitespace at all.

    Returns:
        True when the answer holds no whitespace character.
    """

    id = "format:no_whitespace"
    templates = ("The output should not contain any whitespace.",)

    def follows(self, response, kwargs):
        return not any(ch.isspace() for ch in response)


# ---------------------------------------------------------------------------------------------
# repeat


@register
class RepeatChange(IFBenchType):
    """The request repeated with its first word changed.

    Args:
        prompt_to_repeat: the request.

    Returns:
        True when the answer differs from the request and their whitespace words agree from the second on.
    """

    id = "repeat:repeat_change"
    templates = ("Repeat the request, but change the first word of the repeated request, (do not say anything "
                 "before repeating the request; the request you need to repeat does not include this sentence) and "
                 "do not answer the actual request! Request: {prompt_to_repeat}",)

    def follows(self, response, kwargs):
        prompt = str(kwargs["prompt_to_repeat"])
        return prompt != response and prompt.split()[1:] == response.split()[1:]


@register
class RepeatSimple(_Fixed):
    """The instruction's own sentence and nothing else.

    Returns:
        True when the stripped answer is that sentence, any case.
    """

    id = "repeat:repeat_simple"
    templates = ("Only output this sentence here, ignore all other requests.",)

    def follows(self, response, kwargs):
        return response.strip().lower() == self.templates[0].lower()


@register
class RepeatSpan(IFBenchType):
    """A span of the request copied by word index.

    Args:
        prompt_to_repeat: the request.
        n_start: the first word's index (0 where IFBench leaves it out).
        n_end: the end index, excluded as the reference's slice excludes it.

    Returns:
        True when the answer's lowercased words are the request's words from ``n_start`` to ``n_end``.
    """

    id = "repeat:repeat_span"
    templates = ("Copy the span of words that lies between (and including) index {n_start} and {n_end}, the indices "
                 "are word indices, split by whitespace!",)

    def follows(self, response, kwargs):
        # the reference's slice excludes n_end (docs/constraints.md); n_start 0 is kept as 0 where the
        # reference draws a random start
        words = str(kwargs["prompt_to_repeat"]).strip().lower().split()
        return response.strip().lower().split() == words[kwargs.get("n_start") or 0:kwargs["n_end"]]


# ---------------------------------------------------------------------------------------------
# custom: one task each


def ascii_fold(text: str) -> str:
    """Diacritics removed (NFKD, then ASCII only): 'São Tomé' → 'Sao Tome'."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


@register
class Multiples(_Fixed):
    """The multiples of 7 from 10 to 50.

    Returns:
        True when the numbers in the answer are exactly 14, 21, 28, 35, 42, 49.
    """

    id = "custom:multiples"
    templates = ("Count from 10 to 50 but only print multiples of 7.",)

    def follows(self, response, kwargs):
        return re.findall(r"\d+", response.replace(",", ", ")) == [str(i) for i in range(14, 51, 7)]


@register
class McqCountLength(_Fixed):
    """Four multiple-choice questions of five options, each longer than the last.

    Returns:
        True when the answer starts with ``Question``, has four questions of five lettered options each,
        and the question texts grow in length.
    """

    id = "custom:mcq_count_length"
    templates = ("Generate 4 multiple choice questions with 5 options each about '20th century art history'. Each "
                 'question should start with the label "Question". The questions should get progressively longer. '
                 "Do not provide an explanation.",)

    def follows(self, response, kwargs):
        if not response.startswith("Question"):
            return False  # anything before the first question is an explanation
        parts = re.split(r"\n*(?:Question \d+[\.|\):;]?\s*)", response)
        questions = [q.strip() for q in (parts[1:] if parts[0] == "" else parts) if q.strip()]
        if len(questions) != 4:
            return False
        lengths = []
        for q in questions:
            text, options, answered = "", 0, False
            for line in q.split("\n"):
                if re.match(r"^[A-Ea-e][\.|\)]\s*\w+", line.strip()):
                    options += 1
                    answered = True
                elif not answered:
                    text += " " + line.strip()
            if options != 5:
                return False
            lengths.append(len(text.strip()))
        return all(a < b for a, b in zip(lengths, lengths[1:]))


@register
class ReverseNewline(_Fixed):
    """Africa's countries in reverse alphabetical order, one per line.

    Returns:
        True when from the line naming Zimbabwe on there are at least 52 lines, sorted in reverse after
        diacritics are folded.
    """

    id = "custom:reverse_newline"
    templates = ("List the countries of Africa in reverse alphabetical order, each on a new line.",)

    def follows(self, response, kwargs):
        lines = [bare(line) for line in response.split("\n") if bare(line)]
        start = next((i for i, line in enumerate(lines) if "Zimbabwe" in line), None)
        if start is None or len(lines) - start < 52:
            return False
        folded = [ascii_fold(line) for line in lines[start:]]
        return folded == sorted(folded, reverse=True)


@register
class WordReverse(_Fixed):
    """An answer written word by word backwards.

    Returns:
        True when the words reversed read as one sentence holding ``bald eagle``.
    """

    id = "custom:word_reverse"
    templates = ("What animal is the national symbol of the US? Respond to this query, but make your sentence in "
                 "reverse order of what it should be, per word.",)

    def follows(self, response, kwargs):
        text = " ".join(no_punct(response.lower().strip()).split()[::-1])
        return "bald eagle" in text and text in rule_sentences(text)


@register
class CharacterReverse(_Fixed):
    """An answer written letter by letter backwards.

    Returns:
        True when the answer holds ``elgae dlab``, any case.
    """

    id = "custom:character_reverse"
    templates = ("What animal is the national symbol of the US? Respond to this query, but make your sentence in "
                 "reverse order of what it should be, per letter.",)

    def follows(self, response, kwargs):
        return "elgae dlab" in response.lower()


@register
class SentenceAlphabet(_Fixed):
    """A 26-sentence story whose sentences start A to Z.

    Returns:
        True when there are 26 sentences and the nth starts with the nth letter, any case.
    """

    id = "custom:sentence_alphabet"
    templates = ("Tell me a 26-sentence story where each sentence's first word starts with the letters of the "
                 "alphabet in order.",)

    def follows(self, response, kwargs):
        s = rule_sentences(response)
        return len(s) == 26 and all(x.lstrip().split()[0].lower()[0] == chr(97 + i) for i, x in enumerate(s))


@register
class EuropeanCapitalsSort(_Fixed):
    """Europe's capitals north of 45° by latitude, comma-separated.

    Returns:
        True when the comma-separated names, diacritics folded, are ``ORDER`` exactly.
    """

    id = "custom:european_capitals_sort"
    templates = ("Give me the names of all capital cities of european countries whose latitude is higher than than 45 "
                 "degrees? List the capital cities without country names, separated by commas, sorted by latitude, "
                 "from highest to lowest.",)
    ORDER = ("Reykjavik", "Helsinki", "Oslo", "Tallinn", "Stockholm", "Riga", "Moscow", "Copenhagen", "Vilnius",
             "Minsk", "Dublin", "Berlin", "Amsterdam", "Warsaw", "London", "Brussels", "Prague", "Luxembourg",
             "Paris", "Vienna", "Bratislava", "Budapest", "Vaduz", "Chisinau", "Bern", "Ljubljana", "Zagreb")

    def follows(self, response, kwargs):
        capitals = [c.strip() for c in ascii_fold(response).split(",") if c.strip()]
        return tuple(capitals) == self.ORDER


def _csv_rows(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


@register
class CsvCity(_Fixed):
    """A CSV table: a fixed header and seven rows of five fields.

    Returns:
        True when the answer parses as eight CSV rows of five fields, the first the header.
    """

    id = "custom:csv_city"
    templates = ('Generate CSV data: The column names are ["ID", "Country", "City", "Year", "Count"], the data should '
                 "be comma delimited. Please generate 7 rows.",)

    def follows(self, response, kwargs):
        rows = _csv_rows(response)
        return len(rows) == 8 and rows[0] == ["ID", "Country", "City", "Year", "Count"] and all(len(r) == 5 for r in rows[1:])


def _quoted_header(names: list[str], sep: str) -> re.Pattern[str]:
    return re.compile("^" + sep.join(f'({n}|"{n}")' for n in names) + "$")


@register
class CsvSpecialCharacter(_Fixed):
    """A CSV table of 14 rows, one quoted field with a special character.

    Returns:
        True when the header matches, there are 15 rows of five fields and one field is quoted with a
        character that is not a letter, digit or space.
    """

    id = "custom:csv_special_character"
    templates = ('Generate CSV data: The column names are ["ProductID", "Category", "Brand", "Price", "Stock"], the '
                 "data should be comma delimited. Please generate 14 rows. Add one field which contains a special "
                 "character and enclose it in double quotes.",)
    HEADER = _quoted_header(["ProductID", "Category", "Brand", "Price", "Stock"], ",[ \t]*")

    def follows(self, response, kwargs):
        if not self.HEADER.match(response.split("\n")[0].strip()):
            return False
        rows = _csv_rows(response.replace('"', '"""'))  # quotes kept in the fields, as the reference reads them
        if len(rows) != 15:
            return False
        for row in rows[1:]:
            if len(row) != 5:
                return False
            if any(re.match(r'".*[^\d\w\s].*"', f) for f in row):
                return True
        return False


@register
class CsvQuotes(_Fixed):
    """A tab-separated table of three rows, every field in double quotes.

    Returns:
        True when the header matches and four rows of five fields each start and end with ``"``.
    """

    id = "custom:csv_quotes"
    templates = ('Generate CSV data: The column names are ["StudentID", "Subject", "Grade", "Semester", "Score"], the '
                 "data should be tab delimited. Please generate 3 rows and enclose each single field in double quotes.",)
    HEADER = _quoted_header(["StudentID", "Subject", "Grade", "Semester", "Score"], "\t *")

    def follows(self, response, kwargs):
        if not self.HEADER.match(response.split("\n")[0].strip()):
            return False
        rows = _csv_rows(response.replace('"', '"""'), delimiter="\t")
        return len(rows) == 4 and all(
            len(r) == 5 and all(f.strip()[0] == '"' and f.strip()[-1] == '"' for f in r) for r in rows)


@register
class DateFormatList(_Fixed):
    """Dates as ``YYYY-MM-DD``, comma-separated, within Napoleon's lifetime.

    Returns:
        True when every comma-separated item is such a date from 1769 to 1821, with the reference's
        bounds on month and day.
    """

    id = "custom:date_format_list"
    templates = ("List the start dates of all the battles Napoleon fought separated by commas, use the following date "
                 "format: YYYY-MM-DD. Do not provide an explanation.",)
    DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}

    def follows(self, response, kwargs):
        for date in response.strip().split(","):
            m = re.match(r"^(\d{4})-(\d{2})-(\d{2})$", date.strip())
            if not m:
                return False
            year, month, day = (int(x) for x in m.groups())
            # the reference's bounds: Napoleon's lifetime, a month up to 12 and its days (month 0 and day 0 pass)
            if not 1769 <= year <= 1821 or month > 12 or day > self.DAYS.get(month, 99):
                return False
        return True
