"""Campaigns: lead lists, the compliance rules of when a person may be called, the
scheduler that decides each dial attempt, carrier dialing, status webhooks in, outcome
webhooks out, analytics and the audit log.

`campaigns` uses `ai` and `media`; nothing in them imports it.

- `compliance`: calling windows in the person's local time (every candidate zone when the
  zone is ambiguous), attempt frequency caps, quiet periods after a conversation, do-not-
  call; one `decide` that says whether a call may be placed now, and if not, from when.
- `leads`: lead CSVs read as a stream, rows normalised or rejected with their line number.
- `attempts`: a dial attempt's state from carrier status callbacks, in any order.
- `scheduler`: the tick that picks due leads (caps, compliance) and queues their attempts;
  `dialer`: one queued attempt into one carrier call; `status`: carrier callbacks and the
  call's end applied to attempts; `settle`: an ended attempt into its lead's next state;
  `reconcile`: what a crash left in flight, set right from the carriers' own status.
- `audit`: the append-only audit log (who did what, when), its action vocabulary and the
  retention purge.
- `outbox`: outcome webhooks queued in the outcome's transaction and delivered at least
  once, signed (`signing`), with back-off; `outcome_events`: their body.
"""
