"""Wire-level tests: the gateway under a real gunicorn process, spoken to over raw sockets."""
