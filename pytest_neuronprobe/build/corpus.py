"""A deterministic, generated English-like corpus with enough structure for small LMs to learn.

Texts come from templates over counting, digits, dates, arithmetic, sentiment, code-like lines,
questions, lists, quotes and number sequences, so a small trained model develops neurons that
respond to recognisable features (digits, negative words, code tokens, ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["DIGITS", "TEMPLATE_KINDS", "generate_corpus"]

DIGITS: list[str] = [str(i) for i in range(10)]

_NOUNS = [
    ("apple", "apples"),
    ("book", "books"),
    ("cat", "cats"),
    ("dog", "dogs"),
    ("chair", "chairs"),
    ("cup", "cups"),
    ("bird", "birds"),
    ("coin", "coins"),
    ("pen", "pens"),
    ("box", "boxes"),
    ("car", "cars"),
    ("tree", "trees"),
    ("egg", "eggs"),
    ("key", "keys"),
    ("shoe", "shoes"),
    ("lamp", "lamps"),
    ("card", "cards"),
    ("ball", "balls"),
    ("plate", "plates"),
    ("stone", "stones"),
]
_PLACES = [
    "table",
    "shelf",
    "floor",
    "garden",
    "kitchen",
    "room",
    "desk",
    "bag",
    "car",
    "street",
    "park",
    "box",
    "house",
    "yard",
    "office",
    "window",
]
_NAMES = [
    "Alice",
    "Bob",
    "Carol",
    "David",
    "Emma",
    "Frank",
    "Grace",
    "Henry",
    "Ivy",
    "Jack",
    "Kate",
    "Leo",
    "Mia",
    "Noah",
    "Olivia",
    "Paul",
    "Rose",
    "Sam",
    "Tom",
    "Zoe",
]
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_THINGS = [
    "movie",
    "book",
    "meal",
    "concert",
    "game",
    "show",
    "trip",
    "hotel",
    "song",
    "party",
    "play",
    "class",
    "service",
    "coffee",
    "weather",
    "lecture",
]
_POSITIVE = [
    "wonderful",
    "great",
    "amazing",
    "excellent",
    "lovely",
    "fantastic",
    "brilliant",
    "superb",
    "delightful",
    "perfect",
    "beautiful",
    "good",
]
_NEGATIVE = [
    "awful",
    "terrible",
    "horrible",
    "boring",
    "bad",
    "dreadful",
    "poor",
    "disappointing",
    "ugly",
    "painful",
    "dull",
    "worst",
]
_POS_VERBS = ["loved", "enjoyed", "liked", "adored"]
_NEG_VERBS = ["hated", "disliked", "regretted", "endured"]
_INTENSIFIERS = ["really", "very", "truly", "quite", "so"]
_VARS = ["x", "y", "z", "n", "i", "count", "total", "value", "result", "size", "idx", "acc"]
_FUNCS = ["add", "scale", "double", "step", "update", "compute", "check", "merge", "parse", "load"]
_OPS = ["+", "-", "*"]
_COMPARE = [">", "<", ">=", "<=", "=="]
_COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "pink"]
_FOODS = [
    "bread",
    "milk",
    "cheese",
    "rice",
    "beans",
    "tea",
    "butter",
    "apples",
    "pasta",
    "soup",
    "salt",
    "sugar",
    "fish",
    "honey",
    "eggs",
    "carrots",
]
_SAY_VERBS = ["said", "asked", "replied", "whispered", "shouted", "added", "explained"]
_QUOTE_BODIES = [
    "the door is open",
    "I will be there at {h} o'clock",
    "we need {n} more {plural}",
    "the {thing} was {adj}",
    "it is time to go home",
    "please close the window",
    "I have {n} {plural} in my bag",
    "this is the best day",
    "nobody knows the answer",
    "meet me in the {place}",
    "{a} plus {b} is {c}",
]
_NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def _noun(rng: random.Random, n: int) -> str:
    singular, plural = rng.choice(_NOUNS)
    return singular if n == 1 else plural


def _counting(rng: random.Random) -> str:
    n = rng.choice([rng.randint(1, 9), rng.randint(2, 99)])
    noun, place = _noun(rng, n), rng.choice(_PLACES)
    forms = [
        f"there {'is' if n == 1 else 'are'} {n} {noun} on the {place}.",
        f"I counted {n} {noun} in the {place} this morning.",
        f"{rng.choice(_NAMES)} has {n} {noun} and {rng.choice(_NAMES)} has {rng.randint(1, 20)}.",
        f"we found {n} {rng.choice(_COLORS)} {noun} near the {place}.",
        f"the {place} holds exactly {n} {noun}, no more and no less.",
        f"there {'is' if n == 1 else 'are'} {_NUMBER_WORDS[min(n, 12)]} {noun} in the {place}."
        if n <= 12
        else f"about {n} {noun} were left in the {place}.",
    ]
    return rng.choice(forms)


def _digits(rng: random.Random) -> str:
    k = rng.randint(3, 8)
    seq = " ".join(rng.choice(DIGITS) for _ in range(k))
    compact = "".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 6)))
    forms = [
        f"the code is {seq}.",
        f"my phone number is {seq} and it never changes.",
        f"the pin for the {rng.choice(_PLACES)} door is {compact}.",
        f"room {rng.randint(1, 999)} is on floor {rng.randint(1, 9)}.",
        f"the digits are {seq}, read them twice.",
        f"order number {compact} was shipped on {rng.choice(_WEEKDAYS)}.",
        f"the score was {rng.randint(0, 9)} to {rng.randint(0, 9)} at half time.",
    ]
    return rng.choice(forms)


def _date(rng: random.Random) -> str:
    month, day, year = rng.randrange(12), rng.randint(1, 28), rng.randint(1900, 2030)
    name = rng.choice(_NAMES)
    forms = [
        f"the meeting is on {_MONTHS[month]} {day}, {year}.",
        f"{name} was born on {day:02d}/{month + 1:02d}/{year}.",
        f"on {rng.choice(_WEEKDAYS)} {_MONTHS[month]} {day} we went to the {rng.choice(_PLACES)}.",
        f"the report is due {year}-{month + 1:02d}-{day:02d} at {rng.randint(1, 12)} pm.",
        f"in {year} the {rng.choice(_THINGS)} opened in {_MONTHS[month]}.",
        f"{name} will arrive on the {day}th of {_MONTHS[month]}.",
    ]
    return rng.choice(forms)


def _arithmetic(rng: random.Random) -> str:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    forms = [
        f"{a} plus {b} is {a + b}.",
        f"{a} times {b} equals {a * b}.",
        f"{max(a, b)} minus {min(a, b)} is {max(a, b) - min(a, b)}.",
        f"if you add {a} and {b} you get {a + b}.",
        f"{a} + {b} = {a + b}",
        f"{a} * {b} = {a * b}",
        f"half of {2 * a} is {a}, and double {b} is {2 * b}.",
        f"{a} plus {b} is {a + b}, and {a + b} plus {b} is {a + 2 * b}.",
    ]
    return rng.choice(forms)


def _sentiment(rng: random.Random) -> str:
    positive = rng.random() < 0.5
    adj = rng.choice(_POSITIVE if positive else _NEGATIVE)
    adj2 = rng.choice(_POSITIVE if positive else _NEGATIVE)
    verb = rng.choice(_POS_VERBS if positive else _NEG_VERBS)
    thing = rng.choice(_THINGS)
    forms = [
        f"the {thing} was {adj}.",
        f"the {thing} was {rng.choice(_INTENSIFIERS)} {adj}.",
        f"I {rng.choice(_INTENSIFIERS)} {verb} the {thing}, it was {adj}.",
        f"{rng.choice(_NAMES)} said the {thing} was {adj} and {adj2}.",
        f"what a {adj} {thing}, I {verb} every minute of it.",
        f"honestly the {thing} was {adj}, {'I would go again' if positive else 'never again'}.",
        f"review: {adj} {thing}, {rng.randint(1, 5) if not positive else rng.randint(4, 5)} stars.",
    ]
    return rng.choice(forms)


def _code(rng: random.Random) -> str:
    v, w = rng.sample(_VARS, 2)
    n, m = rng.randint(0, 99), rng.randint(1, 9)
    op, cmp_ = rng.choice(_OPS), rng.choice(_COMPARE)
    fn = rng.choice(_FUNCS)
    forms = [
        f"{v} = {n} {op} {m}",
        f"for {v} in range({n}): {w} += {v}",
        f"def {fn}({v}): return {v} {op} {m}",
        f"if {v} {cmp_} {n}: print({v})",
        f"{w} = {fn}({v}, {n})",
        f"while {v} {cmp_} {n}: {v} = {v} {op} {m}",
        f"{v} = [{', '.join(str(rng.randint(0, 9)) for _ in range(rng.randint(2, 6)))}]",
        f"return {fn}({v}) {op} {w}",
        f"assert {fn}({n}) == {m}",
    ]
    return rng.choice(forms)


def _question(rng: random.Random) -> str:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    n = rng.randint(2, 30)
    forms = [
        f"how many {_noun(rng, 2)} are in the {rng.choice(_PLACES)}?",
        f"what is {a} plus {b}? it is {a + b}.",
        f"where did {rng.choice(_NAMES)} put the {_noun(rng, 1)}?",
        f"did you like the {rng.choice(_THINGS)}?",
        f"why was the {rng.choice(_THINGS)} so {rng.choice(_POSITIVE + _NEGATIVE)}?",
        f"can {rng.choice(_NAMES)} bring {n} {_noun(rng, n)} to the {rng.choice(_PLACES)}?",
        f"when is the meeting? it is on {rng.choice(_WEEKDAYS)} at {rng.randint(1, 12)}.",
        f"who has the {rng.choice(_COLORS)} {_noun(rng, 1)}?",
    ]
    return rng.choice(forms)


def _list(rng: random.Random) -> str:
    items = rng.sample(_FOODS, rng.randint(3, 6))
    head = ", ".join(items[:-1]) + f" and {items[-1]}"
    colors = rng.sample(_COLORS, rng.randint(3, 5))
    names = rng.sample(_NAMES, rng.randint(3, 5))
    forms = [
        f"shopping list: {', '.join(items)}.",
        f"we need {head}.",
        f"the colors are {', '.join(colors)}.",
        f"the team is {', '.join(names[:-1])} and {names[-1]}.",
        "todo: " + "; ".join(f"{i + 1}. buy {x}" for i, x in enumerate(items[:4])),
        f"{rng.choice(_NAMES)} bought {head} for the party.",
    ]
    return rng.choice(forms)


def _quote(rng: random.Random) -> str:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    n = rng.randint(2, 12)
    body = rng.choice(_QUOTE_BODIES).format(
        h=rng.randint(1, 12),
        n=n,
        plural=_noun(rng, n),
        thing=rng.choice(_THINGS),
        adj=rng.choice(_POSITIVE + _NEGATIVE),
        place=rng.choice(_PLACES),
        a=a,
        b=b,
        c=a + b,
    )
    name, verb = rng.choice(_NAMES), rng.choice(_SAY_VERBS)
    forms = [
        f'"{body[0].upper() + body[1:]}," {name} {verb}.',
        f'{name} {verb}, "{body}."',
        f'"{body}?" {verb} {name}, and {rng.choice(_NAMES)} nodded.',
    ]
    return rng.choice(forms)


def _sequence(rng: random.Random) -> str:
    start, step, k = rng.randint(0, 30), rng.randint(1, 5), rng.randint(4, 9)
    nums = [str(start + step * i) for i in range(k)]
    forms = [
        ", ".join(nums),
        f"count with me: {' '.join(nums)}.",
        f"the sequence {', '.join(nums[:-1])} continues with {nums[-1]}.",
        f"the next number after {', '.join(nums[:-1])} is {nums[-1]}.",
    ]
    return rng.choice(forms)


_KINDS: dict[str, Callable[[random.Random], str]] = {
    "counting": _counting,
    "digits": _digits,
    "date": _date,
    "arithmetic": _arithmetic,
    "sentiment": _sentiment,
    "code": _code,
    "question": _question,
    "list": _list,
    "quote": _quote,
    "sequence": _sequence,
}
TEMPLATE_KINDS: tuple[str, ...] = tuple(_KINDS)


def _sample(rng: random.Random) -> str:
    first = _KINDS[rng.choice(TEMPLATE_KINDS)](rng)
    # A second sentence now and then spreads lengths towards the 30-token end.
    if rng.random() < 0.25:
        second = _KINDS[rng.choice(TEMPLATE_KINDS)](rng)
        if len(first.split()) + len(second.split()) <= 24:
            return f"{first} {second}"
    return first


def generate_corpus(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` unique generated texts, the same list for the same ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    budget = 50 * n + 1000
    while len(seen) < n:
        if budget == 0:
            raise ValueError(f"could not generate {n} unique texts (got {len(seen)})")
        budget -= 1
        text = _sample(rng)
        if 4 <= len(text.split()) <= 26:
            seen.setdefault(text, None)
    return list(seen)
