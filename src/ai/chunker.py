"""Splits streamed LLM text into speakable pieces (sentences, long clauses) for TTS.

A boundary is only taken once the character after it has arrived, so "1,250.50", "$1.50"
and "Mr. Smith" are never cut: a comma or full stop followed by a digit or letter is not
a boundary, and a full stop after a known abbreviation or an initial is not either.
"""

from __future__ import annotations

_CLOSERS = "\"')]}”’»"
_SENTENCE_END = ".!?…"
_CLAUSE_END = ",;:"
_DASHES = "—–"
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc", "inc",
        "ltd", "co", "corp", "no", "nos", "approx", "dept", "est", "jan", "feb", "mar",
        "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed",
        "thu", "fri", "sat", "sun", "ave", "blvd", "rd", "apt", "ref", "acct", "tel",
    }
)  # fmt: skip


class SentenceChunker:
    """Feed LLM deltas with `push`; get back complete sentences or long-enough clauses.

    `min_chars`: a sentence shorter than this is held and joined with the next one.
    `clause_min_chars`: a comma/semicolon/colon/dash clause is emitted on its own only once
    the text up to it is at least this long (so the first clause of a long answer is
    spoken early, while short lists like "Yes, sure" stay whole).
    """

    def __init__(self, min_chars: int = 8, clause_min_chars: int = 32) -> None:
        self.min_chars = min_chars
        self.clause_min_chars = clause_min_chars
        self._buf = ""
        self._scan = 1  # buffer positions below this were already judged not to be boundaries

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            piece = self._buf[:cut].strip()
            self._buf = self._buf[cut:].lstrip()
            self._scan = 1
            if piece:
                out.append(piece)

    def flush(self) -> list[str]:
        piece = self._buf.strip()
        self._buf = ""
        self._scan = 1
        return [piece] if piece else []

    def _next_cut(self) -> int | None:
        buf = self._buf
        # j is the whitespace just after a candidate boundary; the boundary needs it to exist.
        for j in range(max(self._scan, 1), len(buf)):
            if not buf[j].isspace():
                continue
            kind = self._boundary_kind(buf, j)
            if kind is None:
                continue
            length = len(buf[:j].strip())
            if kind == "hard" and length > 0:
                return j
            if kind == "sentence" and length >= self.min_chars:
                return j
            if kind == "clause" and length >= self.clause_min_chars:
                return j
        self._scan = max(len(buf), 1)
        return None

    @staticmethod
    def _boundary_kind(buf: str, j: int) -> str | None:
        if buf[j] == "\n":
            return "hard"
        k = j - 1
        while k >= 0 and buf[k] in _CLOSERS:
            k -= 1
        if k < 0:
            return None
        c = buf[k]
        if c in "!?…":
            return "sentence"
        if c == ".":
            return None if _is_abbreviation(buf, k) else "sentence"
        if c in _CLAUSE_END:
            return "clause"
        if c in _DASHES or (c == "-" and k >= 1 and buf[k - 1].isspace()):
            return "clause"
        return None


def _is_abbreviation(buf: str, dot: int) -> bool:
    """Whether the full stop at `dot` ends an abbreviation or initial rather than a sentence."""
    start = dot
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    word = buf[start:dot].lstrip("\"'([{“‘«")
    if not word:
        return False
    if word.endswith("."):  # an ellipsis "..." ends a sentence
        return False
    if "." in word and all(len(p) <= 2 for p in word.split(".")):
        return True  # "e.g", "U.S", "a.m"
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: "J. Smith"
    return word.lower() in _ABBREVIATIONS
