"""The demo's sample data: supervisor rows whose held-out facts no training row contains.

A row is a customer asking for one fact of a product (a warranty or a service interval),
the chatbot's answer, the retrieved document that holds the fact, and the reference
judgement. The answer gives the document's value (correct), another value (incorrect:
a different number or a different unit), or no value at all (incorrect: not answered),
so the label follows only from comparing the answer with the document.

Training and held-out rows draw their products, topics and values from disjoint pools,
so no held-out (product, topic, value) fact, nor any of its three parts, occurs in a
training row of either stage: a held-out score measures the comparison, not memory.
Everything is drawn from one seeded generator, so the files are the same on every run.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from recipekit.dataio.atomic import atomic_write_text

KINDS = ("correct", "wrong_value", "no_answer")
# Share of each kind of row, training and held-out alike.
KIND_SHARES = {"correct": 0.4, "wrong_value": 0.3, "no_answer": 0.3}
UNITS = ("days", "weeks", "months", "years")
WARRANTY, MAINTENANCE = "Warranty", "Maintenance"


@dataclass(frozen=True)
class Pool:
    """What one split's facts are drawn from."""

    products: tuple[str, ...]
    topics: tuple[tuple[str, str], ...]  # (topic, category)
    numbers: tuple[int, ...]


TRAIN_POOL = Pool(
    products=("washing machine", "refrigerator", "television", "dishwasher", "air conditioner", "microwave oven",
              "tumble dryer", "vacuum cleaner", "soundbar", "freezer", "electric kettle", "water heater"),
    topics=(("motor warranty", WARRANTY), ("parts warranty", WARRANTY), ("panel warranty", WARRANTY),
            ("free repair period", WARRANTY), ("filter change interval", MAINTENANCE),
            ("drum cleaning interval", MAINTENANCE), ("filter cleaning interval", MAINTENANCE),
            ("service check interval", MAINTENANCE)),
    numbers=(2, 3, 5, 6, 10, 11, 20, 30),
)
HELD_OUT_POOL = Pool(
    products=("air purifier", "robot mop", "coffee machine", "projector", "induction hob", "dehumidifier",
              "bread maker", "wine cooler"),
    topics=(("compressor guarantee", WARRANTY), ("labour coverage", WARRANTY), ("battery guarantee", WARRANTY),
            ("descaling interval", MAINTENANCE), ("brush replacement cycle", MAINTENANCE),
            ("lamp replacement cycle", MAINTENANCE)),
    numbers=(4, 7, 8, 9, 12, 14, 18),
)

QUESTIONS = ("What is the {topic} of my {product}?", "How long is the {topic} for the {product}?",
             "Can you tell me the {topic} of the {product}?")
ANSWERS = ("The {topic} of the {product} is {value}.", "It is {value} for your {product}.",
           "Your {product} has a {topic} of {value}.")
NON_ANSWERS = ("I am not sure about that.", "Please check the manual of your {product}.",
               "Let me transfer you to an agent.")


@dataclass(frozen=True)
class Fact:
    product: str
    topic: str
    category: str
    value: str


def _value(rng: random.Random, pool: Pool) -> tuple[int, str]:
    return rng.choice(pool.numbers), rng.choice(UNITS)


def _wrong_value(rng: random.Random, pool: Pool, number: int, unit: str) -> str:
    """Another value of the same pool: half the time another number, else another unit."""
    if rng.random() < 0.5:
        return f"{rng.choice([n for n in pool.numbers if n != number])} {unit}"
    return f"{number} {rng.choice([u for u in UNITS if u != unit])}"


def supervisor_row(row_id: str, rng: random.Random, pool: Pool, kind: str) -> tuple[dict, Fact]:
    """One judged row of `kind` about a fresh fact of `pool`, and that fact."""
    product = rng.choice(pool.products)
    topic, category = rng.choice(pool.topics)
    number, unit = _value(rng, pool)
    fact = Fact(product, topic, category, f"{number} {unit}")
    question = rng.choice(QUESTIONS).format(topic=topic, product=product)
    if kind == "no_answer":
        said = None
        answer = rng.choice(NON_ANSWERS).format(product=product)
    else:
        said = fact.value if kind == "correct" else _wrong_value(rng, pool, number, unit)
        answer = rng.choice(ANSWERS).format(topic=topic, product=product, value=said)
    if kind == "correct":
        verdict, reason = "Same", "The answer matches the document."
    elif kind == "wrong_value":
        verdict, reason = "Different", "The answer contradicts the document."
    else:
        verdict, reason = "No value", "The answer gives no value."
    label = "correct" if kind == "correct" else "incorrect"
    # the label is written right after the comparison it follows from, and the JSON repeats it
    row = {
        "id": row_id,
        "category": category,
        "transcript": f"Customer: {question}\nBot: {answer}",
        "document": f"{product.capitalize()} {topic}: {fact.value}.",
        "label": label,
        "kind": kind,  # not read by the preparation; the demo counts the kinds of held-out rows
        "reason": reason,
        "think": f"Document: {fact.value}. Answer: {said or 'none'}. {verdict}, so {label}.",
    }
    return row, fact


def _kinds(count: int, rng: random.Random) -> list[str]:
    """`count` row kinds in KIND_SHARES (largest remainders), shuffled."""
    exact = {kind: count * share for kind, share in KIND_SHARES.items()}
    counts = {kind: int(value) for kind, value in exact.items()}
    for kind in sorted(exact, key=lambda k: counts[k] - exact[k])[: count - sum(counts.values())]:
        counts[kind] += 1
    kinds = [kind for kind in KINDS for _ in range(counts[kind])]
    rng.shuffle(kinds)
    return kinds


def stage1_pair(rng: random.Random, fact: Fact) -> dict:
    """A customer-service (question, answer) pair that states `fact` correctly."""
    return {"question": rng.choice(QUESTIONS).format(topic=fact.topic, product=fact.product),
            "answer": ANSWERS[0].format(topic=fact.topic, product=fact.product, value=fact.value)}


@dataclass(frozen=True)
class DemoData:
    stage1_pairs: list[dict]
    train_rows: list[dict]
    held_out_rows: list[dict]
    held_out_facts: list[Fact]


def demo_data(train: int, held_out: int, stage1: int, seed: int) -> DemoData:
    rng = random.Random(seed)
    train_rows, train_facts = zip(*(supervisor_row(f"train-{i:04d}", rng, TRAIN_POOL, kind)
                                    for i, kind in enumerate(_kinds(train, rng), start=1)))
    held_rows, held_facts = zip(*(supervisor_row(f"held-{i:04d}", rng, HELD_OUT_POOL, kind)
                                  for i, kind in enumerate(_kinds(held_out, rng), start=1)))
    pairs = [stage1_pair(rng, rng.choice(train_facts)) for _ in range(stage1)]
    return DemoData(pairs, list(train_rows), list(held_rows), list(held_facts))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path
