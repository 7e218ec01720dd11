"""Webhooks: each change of the change feed pushed to the endpoints admins register."""
