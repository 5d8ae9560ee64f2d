"""Local stand-ins for the outside providers the platform talks to (SMS ...).

Each is a separate HTTP process that behaves as its provider's documentation says: it checks
credentials and signatures, answers the provider's documented errors, rate limits and
delays, and records what it was asked to do so that tests can read it back. They import
nothing from the platform's services, so a mistake in an adapter is not mirrored here.
"""
