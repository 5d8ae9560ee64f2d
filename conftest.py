"""Loaded before anything else pytest collects: nameko's plugin no longer monkey-patches for us."""

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

from kernel.patches import use_pooled_producers  # noqa: E402

use_pooled_producers()  # as every service process does (kernel.runner)
