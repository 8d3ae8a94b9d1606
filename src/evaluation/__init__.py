"""Offline evaluation: personalities (YAML personas of simulated debtors), scenarios and
the simulated debtors that play them, against the agent as text (`text_sim`) or over a
simulated phone call with real audio (`audio_call`).
"""
