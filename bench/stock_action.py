"""fail2ban's stock actions for the ban benchmarks, as fail2ban runs them:
read from its own action.d by its ActionReader and run by its
CommandAction (a shell per operation)."""

F2B_CONFIG = "/etc/fail2ban"


def stock_action(name, opts):
    """The action `name` of fail2ban's action.d with the options opts."""
    from fail2ban.client.actionreader import ActionReader
    from fail2ban.server.action import CommandAction
    r = ActionReader(name, "bench", dict(opts), basedir=F2B_CONFIG)
    if not r.read():
        raise RuntimeError("cannot read fail2ban's %s action" % name)
    r.getOptions({})
    act = CommandAction(None, name)
    for cmd in r.convert():
        if cmd[0] == "multi-set":
            for k, v in cmd[4]:
                setattr(act, k, v)
        elif cmd[0] == "set" and len(cmd) == 6 and cmd[2] == "action":
            setattr(act, cmd[4], cmd[5])
    return act
