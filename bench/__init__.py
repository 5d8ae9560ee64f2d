"""Benchmarks of the echo path against the limits of the machine (``make bench``; not part of the tests).

Every figure is compared with a baseline measured in the same run, on the same
broker and database server: raw kombu and pymongo rates, and a naive pipeline
(``bench/naive``) that does the same work with none of the platform's
guarantees. See ``docs/benchmarks.md``.
"""
