"""The patches of nameko's, eventlet's and kombu's private parts still fit the installed libraries.

:data:`RELIES_ON` lists every private attribute, signature and code path the patches of kernel/patches.py
depend on. When an upgrade changes one of them, these tests fail and name it: read the patch's note in
kernel/patches.py before changing the pin.
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from kernel import patches

ROOT = Path(__file__).resolve().parents[3]
PINNED = {"nameko": "2.14.1", "eventlet": "0.41.3", "kombu": "5.7.0"}  # what the patches were written against


@dataclass(frozen=True)
class Reliance:
    """One thing a patch relies on: ``module:attribute.path`` exists, and (if given) takes ``params``,
    sets ``instance_attrs`` when constructed with no arguments, names ``uses`` in its code or has each
    of ``source`` in its source text."""

    target: str
    params: tuple[str, ...] | None = None
    instance_attrs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    source: tuple[str, ...] = ()

    def problem(self) -> str | None:
        """None if the installed library still has what the patch relies on, else what changed."""
        try:
            found = pkgutil.resolve_name(self.target)
        except (ImportError, AttributeError, ValueError) as error:
            return f"{self.target}: missing ({error})"
        if self.params is not None:
            names = tuple(inspect.signature(found).parameters)
            if names[: len(self.params)] != self.params:
                return f"{self.target}: parameters are {names}, the patch expects {self.params}"
        if self.instance_attrs:
            instance = found()
            missing = [name for name in self.instance_attrs if not hasattr(instance, name)]
            if missing:
                return f"{self.target}: an instance has no {', '.join(missing)}"
        if self.uses:
            names = set(found.__code__.co_names)
            missing = [name for name in self.uses if name not in names]
            if missing:
                return f"{self.target}: its code no longer looks up {', '.join(missing)}"
        text = inspect.getsource(found) if self.source else ""
        missing = [snippet for snippet in self.source if snippet not in text]
        if missing:
            return f"{self.target}: its code no longer contains {', '.join(missing)}"
        return None


RELIES_ON: tuple[Reliance, ...] = (
    # 1. the pooled producer replaces this module global, which Publisher.publish looks up on every call
    Reliance("nameko.amqp.publish:get_producer", ("amqp_uri", "confirms", "ssl", "login_method",
                                                  "transport_options")),
    Reliance("nameko.amqp.publish:DEFAULT_TRANSPORT_OPTIONS"),
    Reliance("nameko.amqp.publish:Publisher.publish", uses=("get_producer",)),
    Reliance("kombu.pools:producers"),
    # 6. transient, unconfirmed RPC replies
    Reliance("nameko.rpc:Responder.publisher_cls"),
    Reliance("nameko.rpc:RpcConsumer.handle_result", uses=("Responder",)),
    Reliance("nameko.amqp.publish:Publisher.use_confirms"),
    Reliance("nameko.amqp.publish:Publisher.delivery_mode"),
    # 2. the resilient RPC consumer
    Reliance("nameko.rpc:RpcConsumer.handle_result", ("self", "message", "result", "exc_info")),
    Reliance("nameko.rpc:Rpc.rpc_consumer"),
    # 3. timed calls
    Reliance("nameko.rpc:MethodProxy.__init__", ("self", "worker_ctx", "service_name", "method_name",
                                                 "reply_listener")),
    Reliance("nameko.rpc:MethodProxy._call", uses=("get_reply_event",)),
    Reliance("nameko.rpc:ReplyListener", instance_attrs=("_reply_events",)),
    Reliance("nameko.rpc:ReplyListener.get_reply_event", uses=("_reply_events",)),
    Reliance("nameko.rpc:RpcReply.__init__", ("self", "reply_event")),
    Reliance("nameko.rpc:ServiceProxy.__init__", ("self", "worker_ctx", "service_name", "reply_listener")),
    # 4. the CLI's expiring proxy
    Reliance("nameko.standalone.rpc:ClusterProxy.__init__", ("self", "worker_ctx", "reply_listener"),
             uses=("_worker_ctx", "_reply_listener")),
    # 5. the graceful web server
    Reliance("nameko.web.server:WebServer", instance_attrs=("_gt", "_sock", "_serv", "_is_accepting")),
    Reliance("nameko.web.server:WebServer.process_request", ("self", "sock", "address")),
    Reliance("nameko.web.server:WebServer.run", uses=("_is_accepting", "process_request")),
    Reliance("eventlet.wsgi:STATE_IDLE"),
    Reliance("eventlet.wsgi:Server.process_request", ("self", "conn_state")),
    Reliance("eventlet.wsgi:Server.__init__", ("self", "socket", "address", "app"), uses=("keepalive",)),
    Reliance("eventlet.wsgi:HttpProtocol.handle_one_response", source=("self.server.keepalive",)),
    # kernel.handlers.ReliableQueueConsumer
    Reliance("nameko.messaging:QueueConsumer.get_consumers", ("self", "consumer_cls", "channel")),
    Reliance("kombu.messaging:Consumer.on_decode_error"),
)


def problems() -> list[str]:
    """What changed under the patches: a version other than :data:`PINNED`, or a reliance that no longer holds."""
    found = [f"{name} {version(name)} is installed; the patches were checked against {pinned}"
             for name, pinned in PINNED.items() if version(name) != pinned]
    found += [problem for reliance in RELIES_ON if (problem := reliance.problem())]
    return found


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
    assert problems() == []


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
