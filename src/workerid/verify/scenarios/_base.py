"""What a scenario is: a label, whether it needs a running server, and a run."""

from __future__ import annotations

import abc
from typing import ClassVar

from ..session import Session


class Scenario(abc.ABC):
    #: names the "server runs" FAIL row when the server fails under this scenario
    label: ClassVar[str]
    #: True: the server must be up before :meth:`run` (started if an earlier
    #: scenario left it stopped); False: the scenario starts it itself, its own way
    needs_server: ClassVar[bool]

    @abc.abstractmethod
    def run(self, s: Session) -> None:
        """Do it to the server and add its rows; a ``ServerError`` becomes one FAIL row."""
