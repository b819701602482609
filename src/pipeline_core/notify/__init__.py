"""Notifications: rules in DAGs, the payload they send, and the delivery of the outbox."""
