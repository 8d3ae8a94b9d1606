"""Lead CSVs: good rows normalised, bad rows rejected with their line numbers while the good
ones go on, files that cannot be read at all refused whole, and the stream read in pieces
of any size with the same result."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.leads import Lead, LeadFileError, LeadParser, Rejected, neutralise_cell, read_leads

HEADER = "Name,Phone,Amount Due,Currency,Due-Date,Account_Ref,Timezone,Branch\n"


def parse(data: bytes, chunk: int = 7, region: str | None = "US") -> list[Lead | Rejected]:
    p = LeadParser(region)
    out: list[Lead | Rejected] = []
    for i in range(0, len(data), chunk):
        out += p.feed(data[i : i + chunk])
    return out + p.close()


def test_good_rows_are_normalised_and_custom_fields_kept() -> None:
    data = (HEADER
            + "Ann Lee,(202) 555-0101,\"1,250.50\",usd,2026-12-15,AC-1,,North\n"
            + "Ravi Kumar,+91 98765 43210,800,INR,2026-12-20,AC-2,Asia/Kolkata,South\r\n").encode()
    ann, ravi = parse(data)
    assert isinstance(ann, Lead) and isinstance(ravi, Lead)
    assert (ann.line, ann.phone, ann.amount_due, ann.currency) == (2, "+12025550101",
                                                                  Decimal("1250.50"), "USD")
    assert ann.due_date == dt.date(2026, 12, 15) and ann.account_ref == "AC-1"
    assert ann.timezones == ("America/New_York",) and ann.timezone_source == "number"
    assert ann.custom == {"branch": "North"}
    assert ravi.phone == "+919876543210" and ravi.timezones == ("Asia/Kolkata",)
    assert ravi.timezone_source == "file" and ravi.line == 3


def test_an_ambiguous_number_keeps_every_candidate_zone() -> None:
    data = (HEADER + "Mia Chen,+61 412 345 678,300,AUD,2026-12-01,AC-3,,\n").encode()
    (mia,) = parse(data)
    assert isinstance(mia, Lead)
    assert {"Australia/Perth", "Australia/Sydney", "Australia/Lord_Howe"} <= set(mia.timezones)


@pytest.mark.parametrize(("row", "reason"), [
    ("Bo,+1 900 555 0123,10,USD,2026-12-01,B1,,", "premium-rate"),
    ("Bo,12345,10,USD,2026-12-01,B1,,", "not a valid number"),
    ("Bo,call me,10,USD,2026-12-01,B1,,", "not a phone number"),
    ("Bo,+12025550101,abc,USD,2026-12-01,B1,,", "amount_due: 'abc' is not a number"),
    ("Bo,+12025550101,-5,USD,2026-12-01,B1,,", "must be more than 0"),
    ("Bo,+12025550101,1e308,USD,2026-12-01,B1,,", "must be more than 0"),
    ("Bo,+12025550101,NaN,USD,2026-12-01,B1,,", "must be more than 0"),
    ("Bo,+12025550101,10.001,USD,2026-12-01,B1,,", "more than two decimals"),
    ("Bo,+12025550101,10,dollars,2026-12-01,B1,,", "three-letter ISO code"),
    ("Bo,+12025550101,10,USD,next week,B1,,", "is not a date"),
    ("Bo,+12025550101,10,USD,2026-12-01,,,", "account_ref: empty"),
    (",+12025550101,10,USD,2026-12-01,B1,,", "name: empty"),
    ("Bo,+12025550101,10,USD,2026-12-01,B1,Mars/Base,", "not an IANA time zone"),
    ("Bo,+12025550101,10,USD,2026-12-01", "5 fields, the header has 8"),
])
def test_a_bad_row_is_rejected_with_its_line_and_the_good_rows_go_in(row: str, reason: str) -> None:
    data = (HEADER + "Ann,+12025550101,10,USD,2026-12-01,A1,,\n" + row + "\n"
            + "Cy,+12025550102,20,USD,2026-12-01,C1,,\n").encode()
    out = parse(data)
    assert [type(x).__name__ for x in out] == ["Lead", "Rejected", "Lead"]
    bad = out[1]
    assert isinstance(bad, Rejected) and bad.line == 3 and reason in bad.reason, bad


def test_several_problems_in_a_row_are_all_named() -> None:
    (bad,) = parse((HEADER + ",nope,abc,x,soon,,,\n").encode())
    assert isinstance(bad, Rejected)
    for what in ("name", "phone", "amount_due", "currency", "due_date", "account_ref"):
        assert f"{what}:" in bad.reason


def test_quoted_newlines_keep_the_line_numbers_right() -> None:
    data = (HEADER
            + 'Ann,+12025550101,10,USD,2026-12-01,A1,,"two\nline note"\n'
            + "Bo,nope,10,USD,2026-12-01,B1,,\n"
            + '"Cy ""the"" Third",+12025550102,20,USD,2026-12-01,C1,,"a\r\nb\r\nc"\n'
            + "Di,bad,10,USD,2026-12-01,D1,,\n").encode()
    for chunk in (1, 3, 64, 10_000):
        out = parse(data, chunk)
        assert [(type(x).__name__, x.line) for x in out] == [
            ("Lead", 2), ("Rejected", 4), ("Lead", 5), ("Rejected", 8)], chunk
        ann, cy = out[0], out[2]
        assert isinstance(ann, Lead) and ann.custom["branch"] == "two\nline note"
        assert isinstance(cy, Lead) and cy.name == 'Cy "the" Third'


def test_formula_cells_are_stored_as_given_and_neutralised_on_export() -> None:
    data = (HEADER + 'Ann,+12025550101,10,USD,2026-12-01,A1,,"=HYPERLINK(""http://x"",""y"")"\n')
    (ann,) = parse(data.encode())
    assert isinstance(ann, Lead) and ann.custom["branch"].startswith("=HYPERLINK")
    assert neutralise_cell(ann.custom["branch"]) == "'" + ann.custom["branch"]
    for cell in ("+1+1", "-2", "@SUM(A1)", "\tx"):
        assert neutralise_cell(cell).startswith("'")
    assert neutralise_cell("Ann Lee") == "Ann Lee"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"\n\n", "lacks the column(s) name, phone"),
    (b"name,phone\nAnn,+12025550101\n", "lacks the column(s) amount_due, currency, due_date"),
    ("name,phone,amount_due,currency,due_date,account_ref\nZoë,+12025550101,1,USD,2026-12-01,A\n"
     .encode("latin-1"), "not UTF-8 text (bad byte at offset 54)"),
    (b"name,phone,amount_due,currency,due_date,account_ref,phone\n", "names phone more than once"),
    (b'name,phone,amount_due,currency,due_date,account_ref\n"Ann,+1202', "never closed"),
    (b"name,phone,amount_due,currency,due_date,account_ref\nAnn," + b"x" * 20_000 + b",1,USD,2026-12-01,A\n",
     "longer than 10000 characters"),
])
def test_a_file_that_cannot_be_read_is_refused_whole(data: bytes, message: str) -> None:
    with pytest.raises(LeadFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(data)


def test_a_utf8_bom_and_a_header_alone_are_fine() -> None:
    assert parse(b"\xef\xbb\xbf" + HEADER.encode()) == []


async def test_read_leads_streams_chunks() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield HEADER.encode()
        for i in range(1000):
            yield f"P{i},+1202555{i % 10000:04d},{i + 1},USD,2026-12-01,R{i},,\n".encode()

    got = [x async for x in read_leads(chunks())]
    leads = [x for x in got if isinstance(x, Lead)]
    assert len(got) == 1000 and len(leads) == sum(1 for x in got if not isinstance(x, Rejected))
    assert leads[0].line == 2 and got[-1].line == 1001


@pytest.mark.parametrize("raw", [
    "+12025550101", "+16135550123", "+12465550123", "+919876543210", "+442079460000",
    "+447911123456", "+61412345678", "+79161234567", "+77012345678", "+390669812345",
    "+19005550123", "+18005550123", "+5215512345678", "+80012345678", "12345",
])
def test_region_and_type_are_what_phonenumbers_says(raw: str) -> None:
    import phonenumbers

    from campaigns.phones import region_and_type

    number = phonenumbers.parse(raw, "US")
    region, kind = region_and_type(number)
    assert kind == phonenumbers.number_type(number)
    if kind != phonenumbers.PhoneNumberType.UNKNOWN:
        assert region == phonenumbers.region_code_for_number(number)


def test_the_country_comes_from_the_number_and_nul_characters_are_refused() -> None:
    data = (HEADER + "Ann,+1 613 555 0123,10,CAD,2026-12-01,A1,,\n"
            + "Bo,+12025550101,10,USD,2026-12-01,B1,,x\x00y\n").encode()
    ann, bo = parse(data)
    assert isinstance(ann, Lead) and ann.country == "CA"
    assert isinstance(bo, Rejected) and bo.line == 3 and "NUL" in bo.reason


def test_blocks_checked_elsewhere_give_the_same_result() -> None:
    import pickle

    data = (HEADER + 'Ann,+12025550101,10,USD,2026-12-01,A1,,"a\nb"\n'
            + "Bo,nope,10,USD,2026-12-01,B1,,\n").encode()
    p = LeadParser("US")
    blocks = p.split(data) + p.split_close()
    checker = pickle.loads(pickle.dumps(p.checker))
    got = [item for block in blocks for item in checker.check(pickle.loads(pickle.dumps(block)))]
    assert got == parse(data)


@settings(max_examples=3000, deadline=None)
@given(code=st.sampled_from(sorted(__import__("phonenumbers").COUNTRY_CODE_TO_REGION_CODE)),
       digits=st.text(alphabet="0123456789", min_size=4, max_size=12))
def test_region_and_type_agree_with_phonenumbers_for_any_number(code: int, digits: str) -> None:
    import phonenumbers

    from campaigns.phones import region_and_type

    try:
        number = phonenumbers.parse(f"+{code}{digits}", None)
    except phonenumbers.NumberParseException:
        return
    region, kind = region_and_type(number)
    assert kind == phonenumbers.number_type(number)
    if kind != phonenumbers.PhoneNumberType.UNKNOWN:
        assert region == phonenumbers.region_code_for_number(number)


@pytest.mark.parametrize("code", [1, 7, 44, 61, 262, 590, 599, 212, 47, 39])
def test_region_and_type_agree_across_a_shared_country_code(code: int) -> None:
    import phonenumbers

    from campaigns.phones import region_and_type

    regions = phonenumbers.region_codes_for_country_code(code)
    examples = [phonenumbers.example_number(r) for r in regions]
    rest = {phonenumbers.national_significant_number(e)[3:] for e in examples if e is not None}
    valid = 0
    for prefix in range(100, 1000):
        for tail in rest:
            number = phonenumbers.parse(f"+{code}{prefix}{tail}", None)
            region, kind = region_and_type(number)
            assert kind == phonenumbers.number_type(number), number
            if kind != phonenumbers.PhoneNumberType.UNKNOWN:
                valid += 1
                assert region == phonenumbers.region_code_for_number(number), number
    assert valid > 0


def _parsed_or_error(parse, raw: str, region: str | None):  # type: ignore[no-untyped-def]
    import phonenumbers

    try:
        return parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return ("error", exc.error_type)


@settings(max_examples=4000, deadline=None)
@given(
    code=st.sampled_from(sorted(__import__("phonenumbers").COUNTRY_CODE_TO_REGION_CODE)),
    digits=st.text(alphabet="0123456789", min_size=1, max_size=16),
    separators=st.lists(st.sampled_from([" ", "-", "(", ")", ".", "", "  "]), min_size=3, max_size=3),
    region=st.sampled_from(["US", "IN", "GB", "IT", None]),
)
def test_the_quick_parse_is_phonenumbers_parse(
    code: int, digits: str, separators: list[str], region: str | None
) -> None:
    import phonenumbers

    from campaigns.phones import parse_number

    cut = len(digits) // 2
    raw = f"+{code}{separators[0]}{digits[:cut]}{separators[1]}{digits[cut:]}{separators[2]}"
    assert _parsed_or_error(parse_number, raw, region) == _parsed_or_error(phonenumbers.parse, raw, region)


@settings(max_examples=1500, deadline=None)
@given(raw=st.text(alphabet="+0123456789 -().x#;,ext", min_size=0, max_size=24),
       region=st.sampled_from(["US", "IN", None]))
def test_the_quick_parse_is_phonenumbers_parse_for_any_text(raw: str, region: str | None) -> None:
    import phonenumbers

    from campaigns.phones import parse_number

    assert _parsed_or_error(parse_number, raw, region) == _parsed_or_error(phonenumbers.parse, raw, region)


@pytest.mark.parametrize("raw", [
    "+39 06 1234 5678",  # Italy: the leading zero is part of the number
    "+44 020 7946 0958",  # a national prefix written after the country code
    "+52 1 55 1234 5678",  # Mexico's old mobile prefix
    "+54 9 11 1234 5678",  # Argentina's mobile 9
    "+1 202 555 0101", "+91 98765 43210", "+1 (415) 555-2671", "+800 1234 5678",
])
def test_the_quick_parse_agrees_on_awkward_numbers(raw: str) -> None:
    import phonenumbers

    from campaigns.phones import parse_number

    assert _parsed_or_error(parse_number, raw, "US") == _parsed_or_error(phonenumbers.parse, raw, "US")
