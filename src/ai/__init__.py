"""Speech and conversation: provider protocols (VAD, STT, policy/LLM, TTS), their
embedded and cloud implementations, the playbook format and the one conversation
engine shared by live calls and offline simulations.

`ai` depends on nothing else in dialkit; audio formats come in as plain values.
"""
