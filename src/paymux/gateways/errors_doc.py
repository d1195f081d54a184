"""Print docs/errors.md with every connector's code rows: ``python -m paymux.gateways.errors_doc``
(``make docs``). The page itself is rendered by ``paymux.domain.errors_doc``."""

from __future__ import annotations

from paymux.domain.errors_doc import render
from paymux.gateways.connectors import connectors

__all__ = ["main"]


def main() -> None:
    connectors()  # registers each connector's rows in paymux.domain.errors.GATEWAY_CODES
    print(render(), end="")


if __name__ == "__main__":
    main()
