"""What an agent's utterance means, independent of any script's exact words.

`understand(text, facts)` returns the dialogue acts a listener would hear in one agent
turn — asking for the debtor by name, an identity check, the debt collector disclosure,
the debt named, a payment offer (full, settlement with its amount, instalments with their
count and amount), a question about amount or date, a restatement to confirm, empathy, a
call-back offer, a transfer, a threat, a goodbye — with the amounts and the date it names.

It works from broad English concept lexicons and the facts the listener knows (their name,
balance and creditor), never from a playbook's sentences, and on what a speech recogniser
hands over (lower case, no punctuation, numbers spelled out), so a reworded or reordered
script means the same thing to the simulated debtor.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Literal

from ai.extract import normalize, parse_date, words_to_digits

__all__ = ["Act", "Facts", "Meaning", "amounts_in", "heard", "understand"]

Act = Literal[
    "greeting", "introduction", "identity_request", "name_question", "verification",
    "verification_failed", "disclosure", "debt_named", "offer_full", "offer_settlement",
    "offer_instalments", "ask_amount", "date_question", "confirmation", "empathy",
    "callback_offer", "callback_question", "transfer", "threat", "goodbye", "still_there",
    "not_understood", "acknowledged", "opt_out_ack", "question",
]


@dataclass(frozen=True)
class Facts:
    """What the listener knows that the agent may mention."""

    debtor_name: str
    balance: float
    creditor: str
    today: dt.date


@dataclass
class Meaning:
    """The acts heard in one agent turn, and the values they carry."""

    text: str
    acts: set[str] = field(default_factory=set)
    amounts: list[float] = field(default_factory=list)
    amount: float | None = None  # what an offer or restatement asks for (per payment)
    count: int | None = None  # number of instalments
    date: dt.date | None = None
    words: int = 0

    def __contains__(self, act: object) -> bool:
        return act in self.acts

    @property
    def offer(self) -> str | None:
        """The kind of payment the agent proposes, if it proposes one."""
        for kind in ("offer_instalments", "offer_settlement", "offer_full"):
            if kind in self.acts:
                return kind.removeprefix("offer_")
        return None


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b")


_Q_START = _rx(
    r"(could|would|can|will|may|might|shall|do|does|did|are|is|was|were|have|has)"
    r" (you|i|we|it|that|this|there)",
    r"what", r"when", r"which", r"how", r"who", r"where", r"why",
    r"(is|does) that (work|sound|suit)", r"right", r"correct", r"okay with you", r"ok with you",
)
_GREETING = _rx(r"hello", r"hi", r"hey", r"good (morning|afternoon|evening)")
_INTRO = _rx(r"my name is", r"this is \w+ (calling )?(from|with|at)", r"calling (from|on behalf of)",
             r"\w+ here (from|with)", r"i am \w+ from", r"im \w+ from", r"i work (for|with)")
_REACH = _rx(
    r"speak(ing)? (with|to)", r"talk(ing)? (with|to)", r"(is|am i|are you) (this )?(talking|speaking)",
    r"is (this|that|it)", r"are you", r"looking for", r"(trying|hoping) to (reach|contact|get hold of)",
    r"reach(ing)?", r"get hold of", r"put \w+ on", r"is \w+ (there|available|home|in)",
    r"(there|available|home)", r"speaking",
)
_NAME_Q = _rx(r"who (am i|i am) (speaking|talking) (with|to)", r"(what|whats) your name",
              r"who is (this|speaking)", r"may i ask who")
_VERIFY_WHAT = _rx(
    r"(year|date) of birth", r"birth ?(year|date|day)", r"born", r"dob", r"how old",
)
_VERIFY_HOW = _rx(
    r"verify", r"verification", r"confirm (your|who you are|that youre|that you are|some details|your identity)",
    r"(security|identity) (check|question|purposes)", r"for (your )?(security|privacy|protection)",
    r"make sure (im|i am|that im|i have) (speaking|talking|the right)", r"right person",
)
_VERIFY_FAIL = _rx(r"(doesnt|does not|didnt|did not) match", r"not (match|what we have)",
                   r"(unable|not able) to (verify|confirm)", r"couldnt (verify|confirm)")
_DISCLOSURE = _rx(
    r"debt collector", r"collection (agency|agencies|company|firm)", r"collections? (agency|company|department)",
    r"attempt(ing)? to collect", r"(collect|collecting) a debt", r"information (obtained|we obtain|gathered)",
    r"used for that purpose",
)
_DEBT = _rx(
    r"debts?", r"balance", r"owe", r"owed", r"owing", r"past due", r"overdue", r"outstanding",
    r"arrears", r"delinquent", r"unpaid", r"amount due", r"loan", r"bill", r"account",
    r"in collections?", r"behind on",
)
_PAY = _rx(
    r"pay", r"paying", r"payment", r"payments", r"paid", r"settle", r"settlement", r"clear",
    r"resolve", r"take care of", r"accept", r"cover", r"plan", r"arrangement", r"put down",
    r"contribute", r"commit", r"afford", r"manage", r"handle", r"instal?lments?", r"split",
    r"spread", r"installment",
)
_FULL = _rx(r"full (balance|amount|payment|sum)", r"in full", r"entire (balance|amount|sum)",
            r"whole (balance|amount|thing|sum)", r"total (balance|amount)", r"all of it",
            r"everything you owe", r"the (whole|full) \d+", r"one (single )?payment", r"lump sum",
            r"all at once", r"pay (it|this|that) off")
_SETTLE = _rx(r"settle", r"settlement", r"reduced", r"reduction", r"discount(ed)?", r"lower (amount|sum)",
              r"less than", r"(close|resolve|clear) (the|your|this) (account|balance|debt)",
              r"(one|1) time offer", r"in full satisfaction",
              r"consider (it|the account|the debt|this|that) (resolved|settled|closed|paid)", r"forgive", r"waive", r"knock off",
              r"(percent|%) off", r"instead of")
_INSTAL = _rx(r"monthly", r"(a|per|each|every) month", r"instal?lments?", r"split", r"spread",
              r"payment plan", r"smaller (payments|amounts|parts)", r"(\d+|several|a few) (monthly )?payments",
              r"over (\d+|the next \d+|a few|several) (months|weeks)", r"(a|per|each|every) (week|fortnight)",
              r"bi ?weekly", r"break (it|that|this) (up|down)", r"in parts", r"chunks")
_ASK_AMOUNT = _rx(
    r"how much (could|can|would|will|are|do) you", r"how much (is|would be) (affordable|manageable|possible)",
    r"what (amount|sum|figure)", r"what (could|can|would) you (afford|manage|pay|do|put)",
    r"(an|the) amount (that|which) (works|suits|is affordable|you can)", r"how much can you",
    r"(what|how much) (is|would be) (comfortable|realistic|doable)", r"what (are|would) you (be )?able to pay",
)
_ASK_DATE = _rx(
    r"(what|which) (date|day)", r"when (could|can|would|will|might|do) you", r"by when",
    r"on what (date|day)", r"when (is|would be) (good|best|possible|convenient)",
    r"when (are|will) you (able|going)", r"(what|which) date (works|suits)", r"pick a date",
    r"how soon", r"when (should|shall) (we|i) (expect|schedule|set)",
)
_CONFIRM = _rx(
    r"to confirm", r"confirming", r"let me (confirm|repeat|read|make sure|check)", r"just to (be clear|recap|check)",
    r"to (recap|summarize|summarise)", r"so (you will|youll|you are going to|youre going to|that is|thats)",
    r"is that (correct|right|accurate)", r"did i get that right", r"have i got that right",
    r"(correct|right)$", r"you (have )?agreed to", r"(i have|ive) (got|noted) you (down )?for",
    r"can you confirm", r"please confirm",
)
_EMPATHY = _rx(
    r"sorry to hear", r"i (completely |totally |really )?understand", r"(thats|that is) understandable",
    r"(that|it) (must|sounds|can) be (hard|difficult|tough|stressful|frustrating)", r"i hear you",
    r"(that|it) (sounds|seems) (really |very |so )?(hard|difficult|tough|stressful|rough)",
    r"thank you for (telling|sharing|letting|explaining|being)", r"i appreciate", r"i know (this|that|its|it is) (hard|difficult|not easy)",
    r"no (pressure|rush)", r"take your time", r"we want to help", r"(here|happy) to help",
    r"find something that works", r"work (something out|with you)",
)
_CALLBACK = _rx(
    r"call (you )?(back|again|later)", r"another time", r"(better|good|convenient) time",
    r"reach you (later|again|another)", r"get back to you", r"follow up (later|another)", r"ring you back",
)
_TRANSFER = _rx(r"transfer(ring)?", r"connect(ing)? you", r"put you through", r"(please )?hold (on|while|the line)",
                r"(hand|pass) you (over|to)", r"bring in (a|my)")
_THREAT = _rx(
    r"sue", r"sued", r"suing", r"lawsuit", r"legal action", r"take you to court", r"court", r"arrest(ed)?",
    r"jail", r"prison", r"police", r"garnish(ed|ment)?", r"seize", r"repossess", r"ruin your",
    r"(serious|severe) consequences", r"you will regret", r"youll regret", r"(we|i) will (come|find)",
    r"report you", r"lose your (job|house|home)",
)
_GOODBYE = _rx(r"good ?bye", r"bye", r"have a (good|nice|great|lovely|pleasant) (day|evening|night|one|afternoon)",
               r"take care", r"talk (to you )?soon", r"so long")
_STILL_THERE = _rx(r"(are )?you still there", r"can you hear me", r"are you there", r"hello are you")
_NOT_UNDERSTOOD = _rx(r"(didnt|did not|couldnt|could not) (catch|hear|understand|get)", r"say (that|it) again",
                      r"(could|can|would) you repeat", r"repeat (that|yourself)", r"i missed (that|what)",
                      r"pardon", r"come again", r"not sure i (understood|follow)")
_OPT_OUT_ACK = _rx(r"(will not|wont|not going to|will no longer) (call|contact|phone|ring)",
                   r"(remove|removed|take|taken) (you|your number)", r"(no|any) (more|further) calls",
                   r"stop (calling|contacting)")
_ACK = _rx(r"(ive|i have|we have|weve) (noted|recorded|made a note|written down|logged)", r"noted",
           r"we will (verify|check|look into|investigate|review|send)", r"in writing", r"validation",
           r"i will (note|record|pass)")
#: the acts heard whenever their words are, whatever else the sentence says
_PLAIN_ACTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("greeting", _GREETING), ("introduction", _INTRO), ("name_question", _NAME_Q),
    ("verification_failed", _VERIFY_FAIL), ("disclosure", _DISCLOSURE),
    ("date_question", _ASK_DATE), ("empathy", _EMPATHY), ("transfer", _TRANSFER),
    ("threat", _THREAT), ("goodbye", _GOODBYE), ("still_there", _STILL_THERE),
    ("not_understood", _NOT_UNDERSTOOD), ("opt_out_ack", _OPT_OUT_ACK), ("acknowledged", _ACK),
)
_COUNT = re.compile(r"\b(\d+) (?:equal |monthly |weekly |smaller |separate )*(?:payments|instal?lments|months|parts)\b")
_MONTHS = (r"january|february|march|april|may|june|july|august|september|october|november|december|"
           r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec")
_PHONE = re.compile(r"\b(1 )?\d{3} \d{3} \d{4}\b")
_NUMBER = re.compile(r"(?P<cur>\$ ?)?(?P<num>\d+(?:\.\d+)?)(?P<ord>st|nd|rd|th)?(?: (?P<k>thousand|k|grand))?")


def heard(text: str) -> str:
    """What a listener matches against: lower case, spelled numbers as digits, letters,
    digits, `$`, `%` and `.` in decimals only."""
    t = words_to_digits(normalize(text))
    t = t.replace("'", "")
    t = re.sub(r"(?<=\d),(?=\d)", "", t)
    t = re.sub(r"(?<=\d)\.(?=\d)", "\0", t)
    t = re.sub(r"[^a-z0-9$%\0 ]+", " ", t).replace("\0", ".")
    return re.sub(r"\s+", " ", t).strip()


def amounts_in(text: str) -> list[float]:
    """Money amounts named in heard text, in order: "$250", "250 dollars", "1250 dollars and
    50 cents", a bare "800" after "of" or "pay"; not counts, days, times or years."""
    found: list[float] = []
    text = _PHONE.sub(" ", text)
    for m in _NUMBER.finditer(text):
        if m.group("ord"):
            continue
        value = float(m.group("num"))
        if m.group("k"):
            value *= 1000
        before, after = text[: m.start()].rstrip(), text[m.end():].lstrip()
        money_word = re.match(r"(dollars?|bucks|usd|rupees?|euros?|pounds?)\b", after)
        if re.match(r"(and )?(\d+ )?(cents?|paise|pence)\b", after) and before.endswith(("dollars", "and")):
            continue  # the cents of the amount before
        if re.match(r"(payments?|instal?lments?|months?|weeks?|days?|years?|times|parts|percent|%|am|pm|oclock)\b", after):
            continue
        if re.search(rf"\b({_MONTHS})$", before) or re.match(rf"(of )?({_MONTHS})\b", after):
            continue
        if money_word:
            cents = re.match(r"\w+ (and )?(\d{1,2}) (cents?|paise|pence)\b", after)
            if cents:
                value += int(cents.group(2)) / 100
            found.append(round(value, 2))
        elif m.group("cur"):
            found.append(round(value, 2))
        elif 1900 <= value <= 2100 and value == int(value):
            continue
        elif re.search(r"\b(of|pay|paying|just|only|accept|settle for|at|for|about|around|be)$", before) and value >= 5:
            found.append(round(value, 2))
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.01, 0.005 * b)


def _sentences(text: str) -> list[str]:
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p.strip()]
    return parts or [text]


def _is_question(raw: str, h: str) -> bool:
    if "?" in raw:
        return True
    return bool(_Q_START.match(h) or re.search(r"\b(right|correct|okay|ok|yes or no|for you)$", h)
                or re.search(r"\b(would|could|can|will|do|does|is|are) (that|this|you)\b", h))


def _names_debtor(h: str, facts: Facts) -> bool:
    parts = [p for p in heard(facts.debtor_name).split() if len(p) > 1]
    return any(re.search(rf"\b{re.escape(p)}\b", h) for p in parts)


def understand(text: str, facts: Facts) -> Meaning:
    """The acts in one agent turn (all its sentences), with the amounts, the instalment
    count and the date the offer, question or restatement carries."""
    meaning = Meaning(text=text, words=len(text.split()))
    creditor = heard(facts.creditor)
    sentences = _sentences(text)
    turn_question = any(_is_question(raw, heard(raw)) for raw in sentences)
    for raw in sentences:
        h = heard(raw)
        if not h:
            continue
        acts = meaning.acts
        question = _is_question(raw, h)
        amounts = amounts_in(h)
        meaning.amounts.extend(amounts)
        if question:
            acts.add("question")
        named = _names_debtor(h, facts)
        if named and (_REACH.search(h) or question) and not _VERIFY_WHAT.search(h):
            acts.add("identity_request")
        if _VERIFY_WHAT.search(h) or (_VERIFY_HOW.search(h) and question):
            acts.add("verification")
        mentions_balance = any(_close(a, facts.balance) for a in amounts)
        if _DEBT.search(h) or mentions_balance or (creditor and creditor in h):
            acts.add("debt_named")
        instal = bool(_INSTAL.search(h))
        paying = bool(_PAY.search(h) or _SETTLE.search(h)) or instal or mentions_balance
        count_m = _COUNT.search(h)
        asks_amount = bool(_ASK_AMOUNT.search(h))
        if instal and paying and not (asks_amount and not amounts):
            acts.add("offer_instalments")
            if count_m:
                meaning.count = int(count_m.group(1))
            per = [a for a in amounts if not _close(a, facts.balance)]
            if per:
                meaning.amount = per[-1]
            elif meaning.count and meaning.amount is None:
                meaning.amount = round(facts.balance / meaning.count, 2)
        elif paying and amounts and not asks_amount:
            lesser = [a for a in amounts if a < facts.balance * 0.995]
            if lesser and (_SETTLE.search(h) or turn_question or "accept" in h):
                acts.add("offer_settlement")
                meaning.amount = lesser[-1]
            elif mentions_balance and (question or _FULL.search(h)):
                acts.add("offer_full")
                meaning.amount = facts.balance
        elif paying and _FULL.search(h) and question and not _SETTLE.search(h):
            acts.add("offer_full")
            meaning.amount = facts.balance
        if asks_amount:
            acts.add("ask_amount")
        if _CONFIRM.search(h) and (amounts or question):
            acts.add("confirmation")
        if _CALLBACK.search(h):
            acts.add("callback_question" if re.search(r"\bwhen\b|what (time|day)", h) else "callback_offer")
        acts.update(act for act, pattern in _PLAIN_ACTS if pattern.search(h))
        d = parse_date(h, facts.today)
        if d is not None and d >= facts.today:
            meaning.date = d
    if "confirmation" in meaning.acts:
        offers = {"offer_full", "offer_settlement", "offer_instalments"}
        # a restatement names the amount again: it is not a new offer
        if meaning.acts & offers and ("is that" in heard(text) or meaning.date is not None):
            meaning.acts -= offers
            if meaning.amount is None and meaning.amounts:
                meaning.amount = meaning.amounts[-1]
        elif meaning.amounts and meaning.amount is None:
            meaning.amount = meaning.amounts[-1]
    return meaning
