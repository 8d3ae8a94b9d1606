"""Carrier media, the transport side of a call: protocol adapters (Twilio, Exotel), codecs,
20 ms framing, real-time outbound pacing with marks and `clear`, the VAD / STT / TTS
streams, and the per-call session that feeds the conversation engine (`ai.conversation`)
and carries out its commands. No rule of the conversation is decided here.

Audio flows carrier → adapter → codec → engine inputs; engine commands → TTS → player →
carrier. Persistence and the live registry are reached only through `media.ports`.
"""
