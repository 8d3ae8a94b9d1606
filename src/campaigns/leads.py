"""Lead lists: a CSV read as a stream (never the whole file in memory), each row checked
and normalised, each rejected row reported with its line number and reason.

Columns: `name`, `phone`, `amount_due`, `currency`, `due_date`, `account_ref`, and an
optional `timezone` (IANA); any other column is a custom field that reaches the call
context. Headers are matched without regard to case, spaces or dashes ("Amount Due" is
`amount_due`). Phones are normalised to E.164 with `phonenumbers` (the campaign's country
is the default region for national numbers); premium-rate and shared-cost numbers are
refused. Without a `timezone`, the candidate zones come from the number; a number whose
region spans several zones keeps them all (the calling window must hold in every one).

A file that cannot be read as a whole (not UTF-8, no header, a required column missing, a
field over the size limit) raises `LeadFileError` and the caller stores nothing; a bad
row is a `Rejected` and the good rows go on.

Most of a row's cost is `phonenumbers` (parse, type, zones: about 30 µs); the parser asks
each question once, and its costly half (`RowChecker`) holds no state so that an upload
can spread blocks of records over processes while the body is still arriving.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import phonenumbers
from phonenumbers import PhoneNumberType

from campaigns.phones import is_zone, parse_number, region_and_type, zones_for

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "Block",
    "Lead",
    "LeadFileError",
    "LeadParser",
    "Rejected",
    "RowChecker",
    "neutralise_cell",
    "read_leads",
]

REQUIRED_COLUMNS = ("name", "phone", "amount_due", "currency", "due_date", "account_ref")
OPTIONAL_COLUMNS = ("timezone",)
MAX_FIELD_CHARS = 10_000
MAX_AMOUNT = Decimal("1000000000")
_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
}
_KNOWN_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
_CURRENCY = re.compile(r"[A-Z]{3}")
_CENT = Decimal("0.01")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# a physical line: up to and including its end (\r\n, \n or a lone \r), or a last piece
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r(?!$)|\r$)|[^\r\n]+$")


class LeadFileError(ValueError):
    """The file cannot be read at all; nothing of it may be stored."""


@dataclass(frozen=True, slots=True)
class Lead:
    line: int  # where its record starts in the file (1 = the header)
    name: str
    phone: str  # E.164
    amount_due: Decimal
    currency: str
    due_date: dt.date
    account_ref: str
    timezones: tuple[str, ...]  # one zone, or every candidate when the number is ambiguous
    timezone_source: str  # "file" or "number"
    custom: dict[str, str] = field(default_factory=dict)
    country: str = ""  # ISO region of the number ("US", "IN"), "001" for non-geographic codes


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


def _column_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower().lstrip("\ufeff"))


def neutralise_cell(value: str) -> str:
    """A cell as it may be written to an exported CSV: text a spreadsheet would run as a
    formula (`=HYPERLINK(…)`, `+`, `-`, `@`) is prefixed with an apostrophe."""
    return "'" + value if value.startswith(_FORMULA_START) else value


#: complete records of the file, ready to be checked anywhere (another process too): the
#: line each record starts on, and the physical lines of all of them, in order
Block = tuple[list[int], list[str]]


class LeadParser:
    """Push bytes in as they arrive (`feed`), then `close`; each returns the leads and
    rejections completed so far, in file order.

    The work comes in two halves: `split` / `split_close` cut the text into blocks of
    complete records (cheap, in order, and where every whole-file error but an oversized
    field is found), and `checker.check(block)` reads and validates one block (the costly
    half, which may run in other processes)."""

    def __init__(self, default_region: str | None = "US") -> None:
        self.default_region = default_region
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._bytes_read = 0
        self._partial = ""  # text after the last newline
        self._pending: list[str] = []  # lines of records not yet complete (open quote)
        self._quotes = 0  # quote characters in _pending (odd = inside a quoted field)
        self._line = 0  # physical lines consumed
        self._checker: RowChecker | None = None

    @property
    def checker(self) -> RowChecker:
        """Validates blocks; there once the header has been read."""
        if self._checker is None:
            raise LeadFileError("the header has not been read yet")
        return self._checker

    @property
    def header_read(self) -> bool:
        return self._checker is not None

    # ---- the whole: bytes in, leads out ------------------------------------------------

    def feed(self, data: bytes) -> list[Lead | Rejected]:
        return [item for block in self.split(data) for item in self.checker.check(block)]

    def close(self) -> list[Lead | Rejected]:
        return [item for block in self.split_close() for item in self.checker.check(block)]

    # ---- the first half: bytes in, blocks of records out -------------------------------

    def split(self, data: bytes) -> list[Block]:
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise LeadFileError(
                f"the file is not UTF-8 text (bad byte at offset {self._bytes_read + exc.start})"
            ) from None
        self._bytes_read += len(data)
        lines = _LINE.findall(self._partial + text)
        # the last piece waits for more: it has no line end yet, or ends in a "\r" that
        # the next chunk may complete as "\r\n"
        self._partial = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        return self._blocks(lines)

    def split_close(self) -> list[Block]:
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise LeadFileError("the file ends inside a UTF-8 character") from None
        lines = [self._partial + tail] if self._partial + tail else []
        self._partial = ""
        blocks = self._blocks(lines)
        if self._pending:
            raise LeadFileError(
                f"line {self._line - len(self._pending) + 1}: a quoted field is never closed"
            )
        if self._checker is None:
            raise LeadFileError("the file is empty: a header row is needed "
                                f"({', '.join(REQUIRED_COLUMNS)})")
        return blocks

    def _blocks(self, lines: list[str]) -> list[Block]:
        starts: list[int] = []
        complete: list[str] = []
        for line in lines:
            self._pending.append(line)
            self._quotes += line.count('"')
            if self._quotes % 2:
                continue  # a quoted field goes on to the next line
            if self._checker is None:
                self._set_header(self._pending)
            else:
                starts.append(self._line + 1)
                complete += self._pending
            self._line += len(self._pending)
            self._pending, self._quotes = [], 0
        return [(starts, complete)] if starts else []

    def _set_header(self, lines: list[str]) -> None:
        try:
            rows = list(csv.reader(lines, strict=True))
        except csv.Error as exc:
            raise LeadFileError(f"line 1: the header is not valid CSV: {exc}") from None
        row = rows[0] if rows else []
        if any(len(cell) > MAX_FIELD_CHARS for cell in row):
            raise LeadFileError(f"line 1: a field is longer than {MAX_FIELD_CHARS} characters")
        keys = [_column_key(h) for h in row]
        missing = [c for c in REQUIRED_COLUMNS if c not in keys]
        if missing:
            raise LeadFileError(f"the header lacks the column(s) {', '.join(missing)} "
                                f"(found: {', '.join(k or '<blank>' for k in keys)})")
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise LeadFileError(f"the header names {', '.join(dupes)} more than once")
        if any(not k for k in keys):
            raise LeadFileError("the header has a blank column name")
        self._checker = RowChecker(tuple(keys), self.default_region)


@dataclass(frozen=True, slots=True)
class RowChecker:
    """The second half of the parser: reads a block's records as CSV and checks each row
    against the header's columns. Holds no state, so it can be sent to other processes."""

    keys: tuple[str, ...]
    default_region: str | None

    def check(self, block: Block) -> list[Lead | Rejected]:
        out: list[Lead | Rejected] = []
        for line, row in self._records(block):
            result = Rejected(line, row) if isinstance(row, str) else self._row(line, row)
            if result is not None:
                out.append(result)
        return out

    def _records(self, block: Block) -> list[tuple[int, list[str] | str]]:
        """The block's records: the line each starts on and its cells, or why it is not CSV."""
        starts, lines = block
        records: list[tuple[int, list[str] | str]] = []
        # one reader over every record; its line_num says where each row ended, which
        # maps the row back to the record it came from
        reader = csv.reader(lines, strict=True)
        first_line, last = starts[0], len(starts) - 1
        index = 0
        try:
            for cells in reader:
                end = first_line + reader.line_num - 1
                while index < last and starts[index + 1] <= end:
                    index += 1
                records.append((starts[index], cells))
        except csv.Error:
            records = self._records_one_by_one(block)  # rare: say which records are bad
        for line, row in records:
            if not isinstance(row, str) and any(len(cell) > MAX_FIELD_CHARS for cell in row):
                raise LeadFileError(
                    f"line {line}: a field is longer than {MAX_FIELD_CHARS} characters"
                )
        return records

    @staticmethod
    def _records_one_by_one(block: Block) -> list[tuple[int, list[str] | str]]:
        starts, lines = block
        records: list[tuple[int, list[str] | str]] = []
        bounds = [s - starts[0] for s in starts] + [len(lines)]
        for start, lo, hi in zip(starts, bounds, bounds[1:], strict=False):
            try:
                rows = list(csv.reader(lines[lo:hi], strict=True))
            except csv.Error as exc:
                records.append((start, f"not valid CSV: {exc}"))
                continue
            records += [(start, row) for row in rows]
        return records

    def _row(self, line: int, row: list[str]) -> Lead | Rejected | None:
        keys = self.keys
        if len(row) != len(keys):
            if not any(cell.strip() for cell in row):
                return None  # a blank line
            return Rejected(line, f"{len(row)} fields, the header has {len(keys)}")
        cells = dict(zip(keys, [c.strip() for c in row], strict=True))
        if not any(cells.values()):
            return None
        problems: list[str] = []
        if "\x00" in "".join(row):
            return Rejected(line, "a field holds a NUL character")
        name = cells["name"]
        if not name:
            problems.append("name: empty")
        phone, country, zones, source = self._phone(cells, problems)
        amount = _amount(cells["amount_due"], problems)
        currency = cells["currency"].upper()
        if not _CURRENCY.fullmatch(currency):
            problems.append(f"currency: {_show(cells['currency'])} is not a three-letter ISO code")
        due = _date(cells["due_date"], problems)
        ref = cells["account_ref"]
        if not ref:
            problems.append("account_ref: empty")
        if problems:
            return Rejected(line, "; ".join(problems))
        assert phone is not None and amount is not None and due is not None
        custom = {k: v for k, v in cells.items() if k not in _KNOWN_COLUMNS}
        return Lead(line, name, phone, amount, currency, due, ref, zones, source, custom, country)

    def _phone(
        self, cells: dict[str, str], problems: list[str]
    ) -> tuple[str | None, str, tuple[str, ...], str]:
        raw = cells["phone"]
        try:
            number = parse_number(raw, self.default_region)
        except phonenumbers.NumberParseException:
            problems.append(f"phone: {_show(raw)} is not a phone number")
            return None, "", (), ""
        country, number_type = region_and_type(number)
        if number_type == PhoneNumberType.UNKNOWN:
            problems.append(f"phone: {_show(raw)} is not a valid number")
            return None, "", (), ""
        kind = _REFUSED_TYPES.get(number_type)
        if kind is not None:
            problems.append(f"phone: {kind} is never dialled")
            return None, "", (), ""
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        given = cells.get("timezone", "")
        if given:
            if not is_zone(given):
                problems.append(f"timezone: {_show(given)} is not an IANA time zone")
                return e164, country, (), ""
            return e164, country, (given,), "file"
        zones = zones_for(number, number_type)
        if not zones:
            problems.append("timezone: not given, and the number gives none")
        return e164, country, zones, "number"


def _amount(raw: str, problems: list[str]) -> Decimal | None:
    text = raw.replace(",", "").strip()
    try:
        value = Decimal(text)
    except InvalidOperation:
        problems.append(f"amount_due: {_show(raw)} is not a number")
        return None
    if not value.is_finite() or value <= 0 or value >= MAX_AMOUNT:
        problems.append(f"amount_due: {_show(raw)} must be more than 0 and less than {MAX_AMOUNT:,}")
        return None
    cents = value.quantize(_CENT)
    if value != cents:
        problems.append(f"amount_due: {_show(raw)} has more than two decimals")
        return None
    return cents


def _date(raw: str, problems: list[str]) -> dt.date | None:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        problems.append(f"due_date: {_show(raw)} is not a date (YYYY-MM-DD)")
        return None


def _show(value: str, limit: int = 40) -> str:
    """A cell quoted in a reason: cut short and with control characters escaped."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)


async def read_leads(
    chunks: AsyncIterable[bytes], default_region: str | None = "US"
) -> AsyncIterator[Lead | Rejected]:
    """Leads and rejections from a stream of CSV bytes, in file order; raises
    `LeadFileError` when the file cannot be read at all."""
    parser = LeadParser(default_region)
    async for chunk in chunks:
        for item in parser.feed(chunk):
            yield item
    for item in parser.close():
        yield item

