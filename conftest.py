"""Loaded before anything else pytest collects: nameko's plugin no longer monkey-patches for us."""

import eventlet

eventlet.monkey_patch()
