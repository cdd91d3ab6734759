"""fail2ban's counting, replayed: an IP is banned when it reaches maxretry
failures within findtime seconds (defaults as fail2ban's jail.conf)."""
import collections

MAXRETRY = 5
FINDTIME = 600.0


class BanCounter:
    def __init__(self, maxretry=MAXRETRY, findtime=FINDTIME):
        if maxretry < 1 or findtime <= 0:
            raise ValueError("maxretry must be >= 1 and findtime > 0")
        self.maxretry = maxretry
        self.findtime = findtime
        self._recent = collections.defaultdict(collections.deque)
        self.failures = collections.Counter()     # ip -> failures seen
        self.banned = {}                          # ip -> time of the ban

    def add(self, ip, when, count=1):
        """Record count failures of ip at time when; True if ip is banned now."""
        if ip in self.banned:
            self.failures[ip] += count
            return True
        q = self._recent[ip]
        for _ in range(count):
            q.append(when)
        self.failures[ip] += count
        while q and q[0] < when - self.findtime:
            q.popleft()
        if len(q) >= self.maxretry:
            self.banned[ip] = when
            del self._recent[ip]
            return True
        return False
