"""What the ban benchmarks (iptables_bench.py, sets_bench.py) share:
fail2ban's stock actions as fail2ban runs them (read from its own action.d
by its ActionReader, run by its CommandAction: a shell per operation), and
the median of one operation timed item by item."""
import statistics
import time

F2B_CONFIG = "/etc/fail2ban"


def median_ms(fn, items):
    """fn(item) for each item, timed one by one: the median, in ms."""
    times = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


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
