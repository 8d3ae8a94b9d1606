"""Automated tuning of an agent's playbook: structured edits over its tunable fields
(`edits`, with the vetted wording and states they draw on in `blocks`), an offline critique
that holds every candidate to the compliance rules and names the rule an edit broke
(`critique`, over the call paths of `paths`), a failure analysis of evaluated calls
(`analysis`), an offline writer that chooses edits from it (`writer`), and the loop that
accepts a candidate only when it scores better on training scenarios without getting worse
on held-out ones (`loop`).
"""
