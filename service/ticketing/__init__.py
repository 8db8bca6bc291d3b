"""Ticket use cases above sla/ and notifications/: submit (ORM and the one-statement intake), apply an
action, read and list, and their HTTP routes. The ticket itself (tables, workflow, effects, visibility,
numbering) lives in :mod:`service.tickets`."""
