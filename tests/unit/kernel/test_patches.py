"""The patches of nameko's, eventlet's and kombu's private parts still fit the installed libraries.

When an upgrade changes what a patch relies on, these tests fail and name the attribute: read the
patch's note in kernel/patches.py before changing the pin.
"""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

from kernel import patches
from kernel.patches import PINNED, RELIES_ON, Reliance

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("reliance", RELIES_ON, ids=lambda reliance: reliance.target)
def test_what_each_patch_relies_on_is_still_there(reliance):
    assert reliance.problem() is None


@pytest.mark.parametrize("name", sorted(PINNED))
def test_the_installed_and_the_constrained_versions_are_the_ones_the_patches_were_checked_against(name):
    constraints = dict(
        line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert version(name) == PINNED[name]
    assert constraints[name] == PINNED[name]
    assert patches.problems() == []


@pytest.mark.parametrize("reliance,complaint", [
    (Reliance("nameko.rpc:NoSuchThing"), "missing"),
    (Reliance("nameko.rpc:RpcConsumer.handle_result", ("self", "msg")), "parameters are"),
    (Reliance("nameko.web.server:WebServer", instance_attrs=("_renamed",)), "an instance has no _renamed"),
    (Reliance("nameko.amqp.publish:Publisher.publish", uses=("make_producer",)), "no longer looks up"),
    (Reliance("eventlet.wsgi:HttpProtocol.handle_one_response", source=("self.server.keep_alive",)),
     "no longer contains"),
])
def test_a_changed_library_is_named_loudly(reliance, complaint):
    problem = reliance.problem()
    assert problem is not None and complaint in problem and reliance.target in problem


def test_no_other_kernel_module_touches_a_private_attribute_of_a_library():
    """Private access (``obj._name`` on something not our own ``self``) lives in kernel/patches.py only."""
    offenders = []
    for path in [*(ROOT / "kernel").glob("*.py"), *(ROOT / "kernel" / "cli").glob("*.py")]:
        if path.name == "patches.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Attribute) and node.value.attr in {
                        "reply_listener", "_reply_listener", "_serv", "_worker_ctx"}):
                offenders.append(f"{path.name}: .{node.value.attr}.{node.attr}")
            if (isinstance(node, ast.Attribute) and node.attr in {"_worker_ctx", "_reply_listener", "_reply_events",
                                                                   "_call"}
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                offenders.append(f"{path.name}: .{node.attr}")
    assert offenders == []


def test_the_pooled_producer_is_what_nameko_publishes_with():
    import nameko.amqp.publish

    assert nameko.amqp.publish.get_producer is patches.pooled_producer  # conftest.py installs it, as kernel.runner
