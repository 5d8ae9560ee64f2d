"""The configuration ``huisheng up`` hands supervisord, read back by supervisord's own parser."""

from pathlib import Path

from supervisor.options import ServerOptions

from kernel.cli.supervisor import ChildSpec, supervisord_config


def realize(tmp_path: Path, text: str) -> ServerOptions:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    options = ServerOptions()
    options.realize(["-c", str(conf)])
    return options


def test_every_program_is_declared_unstarted_in_its_layer_with_the_restart_policy(tmp_path):
    specs = [ChildSpec("secantus", ("secantusd-py",), layer=0), ChildSpec("tickets", ("python",)),
             ChildSpec("tickets#2", ("python",)), ChildSpec("gateway", ("python",), layer=2)]
    for folder in ("log", "run"):
        (tmp_path / "home" / folder).mkdir(parents=True)
    text = supervisord_config(tmp_path / "home", specs, 1.5, {"HUISHENG_RESTART_LIMIT": "2"}, silent=True)

    options = realize(tmp_path, text)

    groups = {group.name: group for group in options.process_group_configs}
    assert {name: [p.name for p in group.process_configs] for name, group in groups.items()} == {
        "layer0": ["secantus"], "layer1": ["tickets", "tickets-2"], "layer2": ["gateway"]}
    assert [groups[name].priority for name in ("layer0", "layer1", "layer2")] == [100, 101, 102]  # stop: last first
    tickets = groups["layer1"].process_configs[1]
    assert (tickets.autostart, tickets.startretries, tickets.startsecs, tickets.stopwaitsecs) == (False, 2, 10, 2)
    assert tickets.killasgroup and tickets.stopasgroup and tickets.redirect_stderr
    assert tickets.stdout_logfile == str(tmp_path / "home" / "log" / "tickets#2.log")
    program_file = tmp_path / "home" / "run" / "programs" / "tickets-2.json"
    assert tickets.command.endswith(f"-m kernel.cli.supervisor exec {program_file}")
