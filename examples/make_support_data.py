"""Write the quickstart's example dataset: short customer-support messages in four classes.

Every text is composed here from hand-written templates (no copied text). To keep the task from being trivial,
each class has a few common cue words and many rare synonyms drawn from a Zipf-like distribution: the labeled
set sees mostly the common cues, the test set meets rare ones a pretrained teacher knows but a student trained
from scratch on the labeled texts does not. Some messages also mention a second topic in passing.

    python examples/make_support_data.py  # rewrites examples/support/{train,test,unlabeled}.jsonl
                                          # and examples/support_tags/ (the multi-label variant)

The multi-label variant (examples/support_tags, for quickstart_multilabel.yaml) tags each message with every topic
it raises: one, two joined ("... and also ..."), or none (a thank-you note: an empty list, "no label applies").
"""

from __future__ import annotations

import json
import random
from pathlib import Path

LABELS = ["billing", "delivery", "technical", "account"]

CUES = {
    "billing": [
        "I was charged twice for my order",
        "there is an extra fee on my invoice",
        "I need a refund",
        "my card was billed the wrong amount",
        "the price on my receipt is wrong",
        "I was overcharged",
        "please reverse this payment",
        "my subscription renewed without asking",
        "the bank statement shows a duplicate charge",
        "the discount code was not applied at checkout",
        "I want my money back",
        "the tax on my bill looks incorrect",
        "you debited my account two times",
        "the reimbursement never arrived",
        "why did the monthly cost go up",
        "I was invoiced for something I cancelled",
        "the transaction was declined but the funds were taken",
        "my voucher balance disappeared from the payment",
        "the installment plan charged me early",
        "I spotted an unexpected surcharge",
        "a chargeback is pending on my purchase",
    ],
    "delivery": [
        "my package has not arrived",
        "the parcel is late",
        "where is my shipment",
        "the tracking number does not work",
        "the courier left the box at the wrong address",
        "my order is stuck in transit",
        "the delivery was marked complete but nothing came",
        "the box arrived damaged",
        "can I change the shipping address",
        "the driver never showed up",
        "only half of my items were in the parcel",
        "the consignment is held at customs",
        "the postman returned it to the sender",
        "the freight estimate keeps slipping",
        "the dispatch date passed a week ago",
        "my crate was dropped at a neighbour's door",
        "the van skipped my street again",
        "the pickup point lost my package",
        "the expedited shipping took ten days",
        "the carton came open and soaked",
    ],
    "technical": [
        "the app keeps crashing",
        "the website shows an error",
        "the page will not load",
        "the device does not turn on",
        "the update broke the settings screen",
        "the screen freezes",
        "the sync fails every time",
        "the download stops halfway",
        "the camera feature is not working",
        "I get a blank page after login",
        "the firmware upgrade bricked my router",
        "the bluetooth pairing fails",
        "the software throws an exception on startup",
        "the battery drains after the patch",
        "the notifications stopped appearing",
        "the export button does nothing",
        "the installer hangs at ninety percent",
        "the speaker makes a buzzing noise",
        "the widget glitches when I scroll",
        "the display flickers constantly",
    ],
    "account": [
        "I cannot log in",
        "I forgot my password",
        "please delete my account",
        "my account is locked",
        "I want to change my email address",
        "the verification code never arrives",
        "someone hacked my profile",
        "how do I update my username",
        "I need to reset my password",
        "my account was suspended",
        "the two factor prompt keeps rejecting me",
        "I want to merge two profiles",
        "please unlock my login",
        "my credentials stopped working",
        "I lost access to my sign in email",
        "the security question is wrong",
        "I would like to close my membership",
        "my profile shows another person's name",
        "the passcode reset link expired",
        "I got logged out of every session",
    ],
}
OPENERS = [
    "",
    "",
    "hi,",
    "hello,",
    "hey there,",
    "good morning,",
    "excuse me,",
    "urgent:",
    "quick question,",
    "sorry to bother you,",
    "dear support,",
]
CLOSERS = [
    "",
    "",
    "",
    "please help.",
    "thanks.",
    "what should I do?",
    "can you fix this?",
    "this is frustrating.",
    "I need this sorted today.",
    "thank you in advance.",
    "any update?",
    "please advise.",
]
DETAILS = [
    "",
    "",
    "",
    "since yesterday",
    "for the third time",
    "on my new phone",
    "after the last update",
    "on order 4471",
    "this week",
    "again",
    "since last month",
    "on the family plan",
    "right now",
]
ASIDES = {  # a second topic mentioned in passing, to blur the classes a little
    "billing": "and I was also charged for it",
    "delivery": "and the parcel is late too",
    "technical": "and the app crashed too",
    "account": "and now I cannot log in either",
}


def zipf_choice(rng: random.Random, items: list[str], exponent: float) -> str:
    weights = [1 / (rank + 1) ** exponent for rank in range(len(items))]
    return rng.choices(items, weights=weights, k=1)[0]


def message(rng: random.Random, label: str, exponent: float) -> str:
    parts = [rng.choice(OPENERS), zipf_choice(rng, CUES[label], exponent), rng.choice(DETAILS)]
    if rng.random() < 0.15:
        parts.append(ASIDES[rng.choice([other for other in LABELS if other != label])])
    parts.append(rng.choice(CLOSERS))
    text = " ".join(part for part in parts if part)
    return text[0].upper() + text[1:]


THANKS = [
    "thanks for the quick help last week",
    "just wanted to say the team was great",
    "no problem anymore, all good now",
    "thank you, that solved it",
]


def tagged_message(rng: random.Random, exponent: float) -> dict:
    """A message about one topic, two topics, or none (a thank-you note), with every topic it raises as labels."""
    draw = rng.random()
    if draw < 0.08:
        return {"text": rng.choice(THANKS).capitalize() + ".", "label": []}
    topics = rng.sample(LABELS, 2 if draw < 0.45 else 1)
    parts = [rng.choice(OPENERS), zipf_choice(rng, CUES[topics[0]], exponent), rng.choice(DETAILS)]
    if len(topics) == 2:
        parts += ["and also", zipf_choice(rng, CUES[topics[1]], exponent)]
    parts.append(rng.choice(CLOSERS))
    text = " ".join(part for part in parts if part)
    return {"text": text[0].upper() + text[1:], "label": sorted(topics)}


def main_tags(out: Path = Path(__file__).parent / "support_tags") -> None:
    rng = random.Random(11)
    train = [tagged_message(rng, 1.6) for _ in range(200)]
    validation = [tagged_message(rng, 0.6) for _ in range(200)]
    test = [tagged_message(rng, 0.6) for _ in range(400)]
    unlabeled = [{"text": tagged_message(rng, 0.6)["text"]} for _ in range(1000)]
    for name, rows in (("train", train), ("validation", validation), ("test", test), ("unlabeled", unlabeled)):
        write(out / f"{name}.jsonl", rows)
    counts = f"{len(train)} train, {len(validation)} validation, {len(test)} test, {len(unlabeled)} unlabeled"
    print(f"wrote {counts} to {out}")


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def main(out: Path = Path(__file__).parent / "support") -> None:
    rng = random.Random(7)
    # labeled training data leans on the common cues; test and unlabeled data reach the rare synonyms too
    train = [{"text": message(rng, label, 1.6), "label": label} for label in LABELS for _ in range(60)]
    test = [{"text": message(rng, label, 0.6), "label": label} for label in LABELS for _ in range(100)]
    unlabeled = [{"text": message(rng, rng.choice(LABELS), 0.6)} for _ in range(1000)]
    for rows in (train, test, unlabeled):
        rng.shuffle(rows)
    write(out / "train.jsonl", train)
    write(out / "test.jsonl", test)
    write(out / "unlabeled.jsonl", unlabeled)
    print(f"wrote {len(train)} train, {len(test)} test, {len(unlabeled)} unlabeled texts to {out}")


if __name__ == "__main__":
    main()
    main_tags()
