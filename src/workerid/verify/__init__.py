"""``workerid verify``: prove workerid's invariants on real servers.

The probe app (:mod:`.probe`) runs in the servers' workers and records what
each worker says (:mod:`.records`); the harness starts and signals real
servers (:mod:`.servers`), drives requests (:mod:`.client`, :mod:`.traffic`),
samples who holds which ID (:mod:`.sampler`) and turns it all into check
rows: one module per scenario (:mod:`.scenarios`), on one :mod:`.session`
per server, with the rows every settled run gets in :mod:`.settle` and the
judgement on plain data in :mod:`.checks`, tabled by :mod:`.report`.
Nothing here is imported by workerid's core.
"""
