"""Ticket use cases (SPEC §3, §7): a facade over the modules they live in, kept so that the
callers' ``from service.tickets import service`` goes on working.

- :mod:`service.tickets.numbering` — ticket numbers;
- :mod:`service.ticketing.queries` — the read model, visibility-checked loads, history, lists;
- :mod:`service.ticketing.submission` — submission through the ORM (the general path);
  :mod:`service.ticketing.intake` (rules) and :mod:`service.ticketing.intake_pg` (one statement);
- :mod:`service.ticketing.actions` — :func:`apply_action` and its handlers;
  :mod:`service.tickets.effects` — what each action does, declared once.
"""

from __future__ import annotations

from service.ticketing.actions import ACTION_BODIES, HANDLERS, Action, apply_action, deferred_events
from service.ticketing.intake import ON_BEHALF_ROLES, SELF_SERVICE_CHANNELS
from service.ticketing.queries import (
    SORT_KEYS,
    TicketFilter,
    find_ticket,
    list_events,
    list_tickets,
    ticket_read,
)
from service.ticketing.submission import IdempotencyMismatch, create_ticket, request_hash, submit_ticket
from service.tickets.numbering import next_ticket_number, reserve_ticket_numbers
from service.tickets.visibility import get_visible_ticket

__all__ = [
    "ACTION_BODIES", "HANDLERS", "ON_BEHALF_ROLES", "SELF_SERVICE_CHANNELS", "SORT_KEYS", "Action",
    "IdempotencyMismatch", "TicketFilter", "apply_action", "create_ticket", "deferred_events", "find_ticket",
    "get_visible_ticket", "list_events", "list_tickets", "next_ticket_number", "request_hash",
    "reserve_ticket_numbers", "submit_ticket", "ticket_read",
]
