"""Carrier media: protocol adapters (Twilio, Exotel), codecs, 20 ms framing, real-time
outbound pacing, the per-call session and the aiohttp WebSocket endpoints.

Audio flows carrier → adapter → codec → `ai` pipeline → player → carrier. Persistence
and the live registry are reached only through the protocols in `media.ports`.
"""
