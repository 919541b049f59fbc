"""Keeping two homes in step over HTTP: ``push`` sends the lake's changes to a remote service,
``pull`` brings the remote's app tables (watchlists, portfolios, ...) into the local lake."""
