"""SentenceChunker: streamed LLM tokens → sentences and long clauses for TTS."""

from __future__ import annotations

import pytest

from ai.chunker import SentenceChunker


def run(text: str, chunker: SentenceChunker | None = None, step: int = 3) -> list[list[str]]:
    """Feed `text` in `step`-character deltas; return what each push (and the flush) gave."""
    c = chunker or SentenceChunker()
    out = [c.push(text[i : i + step]) for i in range(0, len(text), step)]
    out.append(c.flush())
    return out


def pieces(text: str, **kw: int) -> list[str]:
    return [p for batch in run(text, SentenceChunker(**kw) if kw else None) for p in batch]


def test_sentences_are_emitted_as_soon_as_the_next_word_starts() -> None:
    batches = run("Hello Maria. This is Alex from Acme. Bye", step=1)
    flat = [p for b in batches for p in b]
    assert flat == ["Hello Maria.", "This is Alex from Acme.", "Bye"]
    first_at = next(i for i, b in enumerate(batches) if b)
    assert first_at == len("Hello Maria. ") - 1  # right after the space following the stop


@pytest.mark.parametrize(
    "text",
    [
        "You owe 1,250.50 dollars today.",
        "Mr. Smith and Dr. Jones called at 5 p.m. yesterday.",
        "That is about $3.75, e.g. for the fee.",
        "J. R. Smith is on the account.",
    ],
)
def test_numbers_abbreviations_and_initials_are_not_cut(text: str) -> None:
    assert pieces(text) == [text]


def test_long_clauses_are_split_at_commas_semicolons_colons_and_dashes() -> None:
    text = (
        "I understand this is a difficult time for you, and I want to help; "
        "here is what we can do: split it into three payments - starting next Friday."
    )
    out = pieces(text, clause_min_chars=16)
    assert out == [
        "I understand this is a difficult time for you,",
        "and I want to help;",
        "here is what we can do:",
        "split it into three payments -",
        "starting next Friday.",
    ]


def test_short_clauses_and_sentences_stay_together() -> None:
    assert pieces("Yes, sure, I can do that.") == ["Yes, sure, I can do that."]
    assert pieces("Ok. I will note that down.") == ["Ok. I will note that down."]


def test_question_marks_exclamations_quotes_and_newlines() -> None:
    out = pieces('Did you say "next week?" Great! Thanks\nBye')
    assert out == ['Did you say "next week?"', "Great! Thanks", "Bye"]


def test_ellipsis_ends_a_sentence_and_flush_empties() -> None:
    c = SentenceChunker()
    assert c.push("Let me think... ") == ["Let me think..."]
    assert c.push("   ") == []
    assert c.flush() == []
    assert c.push("Done") == []
    assert c.flush() == ["Done"]
    assert c.flush() == []


def test_pieces_rejoin_to_the_original_text() -> None:
    text = (
        "Hi, this is Alex calling from Acme Recovery on a recorded line. "
        "This is an attempt to collect a debt, and any information obtained will be used "
        "for that purpose. Your balance of $2,400.00 is past due; can we set up a plan today?"
    )
    for step in (1, 2, 5, 17, 1000):
        out = [p for b in run(text, step=step) for p in b]
        assert " ".join(out) == text
        assert len(out) >= 4
