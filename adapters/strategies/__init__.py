"""Sample strategies, shipped to be read and copied (``eventsrc demo`` runs ``Ladder``)."""

from adapters.strategies.ladder import Ladder

__all__ = ["Ladder"]
