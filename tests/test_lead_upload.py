"""Lead CSV uploads over HTTP into a real server and PostgreSQL: every bad-input case of the
issue gets a clear report, good rows go in while bad rows are rejected with their line,
re-uploads update or are duplicates, and a file that cannot be read changes nothing."""

from __future__ import annotations

import csv
import io
import resource
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog

from tests.campaign_server import HEADER, api, campaign_body, campaign_server, lead_csv, lead_row

__all__ = ["api", "campaign_server"]  # fixtures

CSV = {"Content-Type": "text/csv"}


async def _campaign(api: httpx.AsyncClient, **overrides: object) -> str:
    r = await api.post("/api/campaigns", json=campaign_body(**overrides))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _upload(api: httpx.AsyncClient, cid: str, data: bytes | AsyncIterator[bytes],
                  headers: dict[str, str] = CSV) -> httpx.Response:
    return await api.post(f"/api/campaigns/{cid}/leads", headers=headers, content=data)


async def _leads(api: httpx.AsyncClient, cid: str) -> list[dict]:
    out: list[dict] = []
    after = 0
    while True:
        page = (await api.get(f"/api/campaigns/{cid}/leads",
                              params={"limit": 1000, "after": after})).json()
        out += page["items"]
        if page["next_after"] is None:
            return out
        after = page["next_after"]


async def test_good_rows_go_in_while_bad_rows_are_rejected_with_their_line(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    rows = [lead_row(1), lead_row(2, "+1 900 555 0123"), lead_row(3, "12345"),
            lead_row(4, "call me"), lead_row(5, amount="-3"), lead_row(6),
            "Seven,+12025550107,10,USD,someday,ACC-7,1980,Acme,+12025550111", lead_row(8)]
    r = await _upload(api, cid, lead_csv(rows))
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["rows"], report["accepted"], report["rejected"]) == (8, 3, 5)
    reasons = {x["line"]: x["reason"] for x in report["rejections"]}
    assert set(reasons) == {3, 4, 5, 6, 8}
    assert "premium-rate number is never dialled" in reasons[3]
    assert "not a valid number" in reasons[4] and "not a phone number" in reasons[5]
    assert "amount_due" in reasons[6] and "due_date" in reasons[8]
    stored = await _leads(api, cid)
    assert sorted(lead["account_ref"] for lead in stored) == ["ACC-1", "ACC-6", "ACC-8"]
    one = next(lead for lead in stored if lead["account_ref"] == "ACC-1")
    assert (one["phone"], one["country"], one["zones"], one["state"]) == (
        "+12025550001", "US", ["America/New_York"], "pending")
    assert one["custom"] == {"birth_year": "1980", "creditor": "Acme Bank",
                             "callback_number": "+12025550111"}
    assert one["line"] == 2 and one["amount_due"] == "120.50"


async def test_a_re_upload_reports_updated_and_duplicate_rows(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    first = await _upload(api, cid, lead_csv([lead_row(i) for i in range(4)]))
    assert first.json()["accepted"] == 4
    before = {lead["account_ref"]: lead for lead in await _leads(api, cid)}
    # same refs: two unchanged, one with a new amount, one new; ACC-9 twice in the file
    rows = [lead_row(0), lead_row(1, amount="99.00"), lead_row(2), lead_row(9),
            lead_row(9), lead_row(9, amount="5.00")]
    report = (await _upload(api, cid, lead_csv(rows))).json()
    assert (report["accepted"], report["updated"], report["duplicate"], report["rejected"]) == (1, 2, 3, 0)
    assert [(x["line"], x["account_ref"], x["previous_line"]) for x in report["updates"]] == [
        (3, "ACC-1", None), (7, "ACC-9", 6)]
    assert [(x["line"], x["account_ref"], x["previous_line"]) for x in report["duplicates"]] == [
        (2, "ACC-0", None), (4, "ACC-2", None), (6, "ACC-9", 5)]
    after = {lead["account_ref"]: lead for lead in await _leads(api, cid)}
    assert len(after) == 5
    assert after["ACC-1"]["amount_due"] == "99.00" and after["ACC-1"]["id"] == before["ACC-1"]["id"]
    assert after["ACC-1"]["updated_at"] > before["ACC-1"]["updated_at"]
    assert after["ACC-0"]["updated_at"] == before["ACC-0"]["updated_at"]  # untouched
    assert after["ACC-9"]["amount_due"] == "5.00" and after["ACC-9"]["line"] == 7


async def test_an_updated_lead_keeps_its_history(api, campaign_server) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    await _upload(api, cid, lead_csv([lead_row(1)]))
    pool = campaign_server.state.pool
    await pool.execute("UPDATE leads SET state = 'retry', attempts = 2, last_outcome = 'no_answer'"
                       " WHERE campaign_id = $1", __import__("uuid").UUID(cid))
    report = (await _upload(api, cid, lead_csv([lead_row(1, amount="80.00")]))).json()
    assert report["updated"] == 1
    (lead,) = await _leads(api, cid)
    assert (lead["state"], lead["attempts"], lead["last_outcome"], lead["amount_due"]) == (
        "retry", 2, "no_answer", "80.00")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the file is empty"),
    (b"name,phone\nAnn,+12025550101\n", "lacks the column(s) amount_due, currency, due_date, account_ref"),
    (lead_csv([lead_row(1)], header="name,phone,amount_due,currency,due_date,account_ref,birth_year"),
     "the playbook needs the column(s) creditor, callback_number"),
    (lead_csv([lead_row(1), "Zoë,+12025550102,1,USD,2026-12-01,A2,1980,Acme,+12025550111"])
     .decode().encode("latin-1"), "not UTF-8 text (bad byte at offset"),
    (lead_csv([lead_row(1)]) + b'"Ann,+1202', "a quoted field is never closed"),
    (lead_csv([lead_row(1), lead_row(2, amount="1" * 20_000)]), "longer than 10000 characters"),
])
async def test_a_file_that_cannot_be_read_changes_nothing(api, data: bytes, message: str) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    await _upload(api, cid, lead_csv([lead_row(1, amount="10.00")]))
    r = await _upload(api, cid, data)
    assert r.status_code == 422, r.text
    assert "nothing was stored" in r.json()["error"] and message in r.json()["error"]
    (lead,) = await _leads(api, cid)
    assert lead["amount_due"] == "10.00"  # the first row of the bad file would have changed it


async def test_a_file_failing_late_stores_none_of_its_many_good_rows(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)

    async def body() -> AsyncIterator[bytes]:
        yield (HEADER + "\n").encode()
        for start in range(0, 20_000, 1000):
            yield "".join(lead_row(i) + "\n" for i in range(start, start + 1000)).encode()
        yield b"Late,+12025550199,1,USD,2026-12-01,L1,1980,Caf\xe9,+12025550111\n"

    r = await _upload(api, cid, body())
    assert r.status_code == 422 and "not UTF-8" in r.json()["error"]
    assert await _leads(api, cid) == []
    status = (await api.get(f"/api/campaigns/{cid}/status")).json()
    assert status["total_leads"] == 0


async def test_an_empty_file_and_a_header_alone(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    r = await _upload(api, cid, b"")
    assert r.status_code == 422 and "the file is empty" in r.json()["error"]
    r = await _upload(api, cid, ("\ufeff" + HEADER + "\r\n").encode())
    assert r.status_code == 200 and r.json()["rows"] == 0


async def test_the_media_type_must_be_csv_in_utf8(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    data = lead_csv([lead_row(1)])
    r = await _upload(api, cid, data, headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "text/csv" in r.json()["error"]
    r = await _upload(api, cid, data, headers={"Content-Type": "text/csv; charset=iso-8859-1"})
    assert r.status_code == 415 and "UTF-8" in r.json()["error"]
    assert await _leads(api, cid) == []


async def test_quoted_newlines_keep_line_numbers_and_formula_cells_are_neutralised_on_export(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    header = HEADER + ",note"
    rows = [
        lead_row(1, note='"first line\nsecond line"'),
        lead_row(2, "nope", note=""),
        lead_row(3, note='"=HYPERLINK(""http://evil.example"",""click"")"'),
        '"Dee\n""D"" Dee",+12025550104,10,USD,2026-12-01,ACC-4,1980,"Acme\r\nBank",+12025550111,@SUM(A1)',
        lead_row(5, "12", note=""),
    ]
    report = (await _upload(api, cid, lead_csv(rows, header=header))).json()
    assert report["accepted"] == 3
    assert [(x["line"], x["reason"].split(":")[0]) for x in report["rejections"]] == [
        (4, "phone"), (9, "phone")]
    stored = {lead["account_ref"]: lead for lead in await _leads(api, cid)}
    assert stored["ACC-1"]["custom"]["note"] == "first line\nsecond line"
    assert stored["ACC-4"]["name"] == 'Dee\n"D" Dee' and stored["ACC-4"]["line"] == 6
    assert stored["ACC-3"]["custom"]["note"].startswith("=HYPERLINK(")  # stored as given

    r = await api.get(f"/api/campaigns/{cid}/leads/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    exported = {row["account_ref"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert exported["ACC-3"]["note"] == "'" + stored["ACC-3"]["custom"]["note"]
    assert exported["ACC-4"]["note"] == "'@SUM(A1)"
    assert exported["ACC-1"]["note"] == "first line\nsecond line"


async def test_rejections_are_listed_up_to_a_cap_and_counted_in_full(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    rows = [lead_row(i, "bad") for i in range(1500)] + [lead_row(5000)]
    report = (await _upload(api, cid, lead_csv(rows))).json()
    assert (report["rejected"], report["accepted"], report["max_listed"]) == (1500, 1, 1000)
    assert len(report["rejections"]) == 1000 and report["rejections"][-1]["line"] == 1001


async def test_an_unknown_or_cancelled_campaign_takes_no_upload(api) -> None:  # type: ignore[no-untyped-def]
    r = await _upload(api, "00000000-0000-0000-0000-000000000001", lead_csv([lead_row(1)]))
    assert r.status_code == 404
    cid = await _campaign(api)
    await api.post(f"/api/campaigns/{cid}/cancel")
    r = await _upload(api, cid, lead_csv([lead_row(1)]))
    assert r.status_code == 409 and "canceled" in r.json()["error"]


@pytest.mark.slow
async def test_a_100_mb_file_is_streamed_and_stored(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    note = "x" * 300  # wide rows: 100 MB in about 250,000 leads
    header = (HEADER + ",note\n").encode()
    total = 100 * 1024 * 1024
    sent = 0
    rows = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, rows
        yield header
        sent += len(header)
        while sent < total:
            chunk = "".join(f"P{i},+1202{2000000 + i % 7999999},10,USD,2026-12-01,R{i},1980,"
                            f"Acme,+12025550111,{note}\n" for i in range(rows, rows + 2000)).encode()
            rows += 2000
            sent += len(chunk)
            yield chunk

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    r = await _upload(api, cid, body())
    assert r.status_code == 200, r.text[:500]
    report = r.json()
    assert sent >= total and report["rows"] == rows
    assert report["accepted"] + report["rejected"] == rows and report["accepted"] > 0.9 * rows
    status = (await api.get(f"/api/campaigns/{cid}/status")).json()
    assert status["total_leads"] == report["accepted"]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 100, f"the server held {grown_mb:.0f} MB more while reading a 100 MB file"


def _row(i: int, phone: str | None = None, amount: str = "120.50") -> str:
    # numbers of their own: the leads these tests store share the database with the
    # do-not-call tests, which count the leads a number stops
    return lead_row(i, phone or f"+1312555{i % 10000:04d}", amount)


def _chunks(rows: list[str], size: int = 64 * 1024) -> AsyncIterator[bytes]:
    data = lead_csv(rows)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i : i + size]

    return body()


async def test_a_first_upload_of_many_blocks_keeps_file_order_lines_and_reasons(api) -> None:  # type: ignore[no-untyped-def]
    # a first upload is written block by block as it is checked: 9,000 rows are several
    # blocks, with bad rows and a do-not-call number among them
    cid = await _campaign(api)
    r = await api.post(f"/api/campaigns/{cid}/dnc", json={"phone": "+13125554242"})
    assert r.status_code == 201, r.text
    bad = {500, 3500, 8999}
    rows = [_row(i, "12345" if i in bad else None) for i in range(9000)]
    r = await _upload(api, cid, _chunks(rows))
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["rows"], report["accepted"], report["updated"], report["duplicate"],
            report["rejected"], report["dnc"]) == (9000, 8997, 0, 0, 3, 1)
    assert [(x["line"], x["reason"]) for x in report["rejections"]] == [
        (i + 2, "phone: '12345' is not a valid number") for i in sorted(bad)]
    stored = await _leads(api, cid)
    # ids (the turn to be dialled) in file order
    assert [lead["line"] for lead in stored] == [i + 2 for i in range(9000) if i not in bad]
    assert [lead["account_ref"] for lead in stored][:3] == ["ACC-0", "ACC-1", "ACC-2"]
    assert {lead["account_ref"] for lead in stored if lead["state"] == "dnc"} == {"ACC-4242"}


def _repeating_file() -> list[str]:
    rows = [_row(i) for i in range(9000)]
    rows[7000] = _row(4, "nope")
    rows[8000] = _row(10, amount="77.00")  # ACC-10 again (line 12), other details
    rows[8500] = _row(20)  # ACC-20 again (line 22), the same details
    return rows


async def test_a_reference_repeating_late_in_a_first_upload_is_reported_as_in_any_upload(api) -> None:  # type: ignore[no-untyped-def]
    # into an empty campaign the blocks before the repeat are already written when it comes;
    # the report and the leads are those of an upload compared from the start (a campaign
    # that has a lead of its own)
    first = await _campaign(api)
    other = await _campaign(api)
    assert (await _upload(api, other, lead_csv([lead_row(99_999)]))).json()["accepted"] == 1
    reports = []
    for cid in (first, other):
        r = await _upload(api, cid, _chunks(_repeating_file()))
        assert r.status_code == 200, r.text
        reports.append(r.json())
    assert reports[0] == reports[1]
    report = reports[0]
    assert (report["rows"], report["accepted"], report["updated"], report["duplicate"],
            report["rejected"]) == (9000, 8997, 1, 1, 1)
    assert [(x["line"], x["account_ref"], x["previous_line"]) for x in report["updates"]] == [
        (8002, "ACC-10", 12)]
    assert [(x["line"], x["account_ref"], x["previous_line"]) for x in report["duplicates"]] == [
        (8502, "ACC-20", 22)]
    assert [x["line"] for x in report["rejections"]] == [7002]

    def shape(leads: list[dict]) -> list[tuple[str, int, str, str]]:
        return [(x["account_ref"], x["line"], x["amount_due"], x["state"]) for x in leads
                if x["account_ref"] != "ACC-99999"]

    stored = await _leads(api, first)
    assert shape(stored) == shape(await _leads(api, other))
    # a repeated reference is written once, with its last line's details, in that line's turn
    ten = next(x for x in stored if x["account_ref"] == "ACC-10")
    assert (ten["line"], ten["amount_due"]) == (8002, "77.00")
    assert [x["line"] for x in stored] == sorted(x["line"] for x in stored)


async def test_a_first_upload_unreadable_after_a_repeat_stores_nothing(api) -> None:  # type: ignore[no-untyped-def]
    cid = await _campaign(api)
    data = lead_csv(_repeating_file()) + b"Late,+12025550199,1,USD,2026-12-01,L1,1980,Caf\xe9,+1\n"

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    r = await _upload(api, cid, body())
    assert r.status_code == 422 and "not UTF-8" in r.json()["error"]
    assert await _leads(api, cid) == []
    # and the campaign takes the readable part afterwards, as a first upload
    r = await _upload(api, cid, _chunks(_repeating_file()))
    assert (r.json()["accepted"], r.json()["updated"], r.json()["duplicate"]) == (8997, 1, 1)


async def test_references_the_first_upload_may_have_written_are_looked_up(  # type: ignore[no-untyped-def]
    api, campaign_server, monkeypatch
) -> None:
    # with a tiny filter almost every reference may have been written before: each is
    # looked up, none is taken for a repeat (every block goes straight into the leads, each
    # id spent once), and a real repeat still is one
    from campaigns import lead_import

    monkeypatch.setattr(lead_import._Written, "BITS", 64)
    cid = await _campaign(api)
    pool = campaign_server.state.pool
    last_id = await pool.fetchval(
        "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM leads_id_seq")
    with structlog.testing.capture_logs() as logs:
        report = (await _upload(api, cid, _chunks([_row(i) for i in range(6000)]))).json()
    assert (report["accepted"], report["updated"], report["duplicate"]) == (6000, 0, 0)
    assert [e["direct"] for e in logs if e["event"] == "leads_uploaded"] == [True]
    stored = await _leads(api, cid)
    assert [x["line"] for x in stored] == list(range(2, 6002))
    assert [x["id"] for x in stored] == list(range(last_id + 1, last_id + 6001))
    again = await _campaign(api)
    with structlog.testing.capture_logs() as logs:
        report = (await _upload(api, again, _chunks(_repeating_file()))).json()
    assert (report["accepted"], report["updated"], report["duplicate"]) == (8997, 1, 1)
    assert [e["direct"] for e in logs if e["event"] == "leads_uploaded"] == [False]
