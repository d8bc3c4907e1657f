"""Emails: an outbox in the database and the sender that delivers it.

A feature that sends mail calls `service.enqueue()` in the transaction of the change that causes
it, and names a composer in its `mail.py` (`COMPOSERS`) that turns the queued row into a message
when it is sent, so nothing secret (a reset link) is ever stored. Requests never wait for SMTP.
"""
