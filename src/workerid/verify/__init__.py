"""``workerid verify``: prove workerid's invariants on real servers.

The probe app (:mod:`.probe`) runs in the servers' workers and records what
each worker says (:mod:`.records`); the harness starts and signals real
servers (:mod:`.servers`), drives requests (:mod:`.client`), samples who holds
which ID (:mod:`.sampler`) and turns it all into check rows
(:mod:`.scenarios`, :mod:`.checks`, :mod:`.report`). Nothing here is
imported by workerid's core.
"""
