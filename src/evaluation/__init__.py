"""Offline evaluation: personalities (YAML personas of simulated debtors) and the simulated
debtors that play them against the live conversation engine, as text on a virtual clock
(`text_call`) or over a simulated phone call with real audio (`audio_call`).
"""
