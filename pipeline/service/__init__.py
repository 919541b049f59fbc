"""The sync service (``marketlake serve``): scheduler, HTTP API under ``/api/v1`` and the admin
page at ``/``, on the same stages as the command line."""
